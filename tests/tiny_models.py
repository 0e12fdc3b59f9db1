"""Tiny random models of every supported kind, saved to disk like a real model folder.

Built at test time from configs (nothing downloaded) with a small tokenizer trained by the
`tokenizers` library, so the real loading path reads them exactly as it reads a user's folder.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The bank approved the loan after the river bank flooded.",
    "The patient reports chest pain and shortness of breath since Monday.",
    "The tenant shall pay the rent on the first day of each month.",
    "Attention is a clue, not an explanation.",
    "A quick brown fox jumps over the lazy dog, twice.",
    "Hello world! Numbers like 42 and 3.14 appear too.",
] * 4


def _wordpiece_tokenizer():
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
    )


def _bytelevel_tokenizer(bos="<s>", eos="</s>", wrap=True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", bos, eos, "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    if wrap:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=64,
    )


def _metaspace_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=64
    )


def build(kind: str, folder: Path) -> Path:
    """Save a tiny random model of `kind` into `folder` and return the folder."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if kind.startswith("bert"):
        tok = _wordpiece_tokenizer()
        cfg = tf.BertConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, num_labels=3,
        )
        cls = {"bert": tf.BertModel, "bert-cls": tf.BertForSequenceClassification,
               "bert-mlm": tf.BertForMaskedLM}[kind]
    elif kind == "mpnet":  # a family that does not dispatch through AttentionInterface
        tok = _wordpiece_tokenizer()
        cfg = tf.MPNetConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=66, pad_token_id=0,
        )
        cls = tf.MPNetModel
    elif kind == "gpt2":
        tok = _bytelevel_tokenizer(bos="<|endoftext|>", eos="<|endoftext|>", wrap=False)
        cfg = tf.GPT2Config(
            vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=64,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        )
        cls = tf.GPT2LMHeadModel
    elif kind == "llama":
        tok = _bytelevel_tokenizer(wrap=False)
        cfg = tf.LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        cls = tf.LlamaForCausalLM
    elif kind == "bart":
        tok = _bytelevel_tokenizer()
        cfg = tf.BartConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
            decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None,
        )
        cls = tf.BartForConditionalGeneration
    elif kind == "t5":
        tok = _metaspace_tokenizer()
        cfg = tf.T5Config(
            vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
            num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
        )
        cls = tf.T5ForConditionalGeneration
    else:
        raise ValueError(kind)
    model = cls(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


KINDS = ("bert", "bert-cls", "bert-mlm", "mpnet", "gpt2", "llama", "bart", "t5")
