"""Memory of a 4096-token analysis with rollout, kept on disk (core.model.mapped), in one run.

A BERT config with 12 layers, 12 heads and 4096 positions (random weights, hidden size 48) is saved
to a temporary folder; a child process loads it, analyses 4094 word pieces with the attention
written a head at a time to float16 files, computes the rollout one layer at a time, saves the
session and reopens it. After each step it prints the peak resident memory so far (ru_maxrss) and
the current one, against the naive float32 footprint of the attention [L, H, n, n] (plus a float32
rollout [L, n, n]) that the in-memory path would hold. `--heads K` changes the head chunk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

LAYERS, HEADS, N = 12, 12, 4096

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    folder, out, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) * 1024
        return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "now_mb": now / 2**20}
    steps = []
    def step(name, t0):
        steps.append({"step": name, "seconds": round(time.perf_counter() - t0, 2), **rss()})
    t0 = time.perf_counter()
    from attn_desktop.core.model import mapped
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.store.session import load_session, save_session
    mapped.DEFAULT_HEAD_CHUNK = chunk
    loaded = load_model(folder)
    text = open(os.path.join(folder, "long.txt"), encoding="utf-8").read()
    analyze(loaded, "warm up the model.")
    step("load model and warm up", t0)
    t0 = time.perf_counter()
    an = analyze(loaded, text, mapped=out + ".d")
    step("analysis, attention to disk", t0)
    t0 = time.perf_counter()
    r, entry = mapped.rollout(an.arrays["attentions"], os.path.join(out + ".d", "rollout.npy"))
    an.arrays["rollout"] = r
    an.manifest.setdefault("methods", {})["rollout"] = entry
    step("rollout, one layer at a time", t0)
    t0 = time.perf_counter()
    save_session(an, out)
    step("save session", t0)
    del an, r
    t0 = time.perf_counter()
    back = load_session(out)
    step("reopen session", t0)
    print(json.dumps({"tokens": len(back.tokens), "steps": steps,
                      "session_mb": os.path.getsize(out) / 2**20}))
""")


def build(folder: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import tiny_models
    import torch
    import transformers as tf

    torch.manual_seed(0)
    tok = tiny_models._wordpiece_tokenizer()
    tok.model_max_length = N
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=96, max_position_embeddings=N)
    tf.BertModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    words = ["pay", "the", "rent", "."]
    text = " ".join(words[k % 4] for k in range(N - 2))
    assert len(tok(text)["input_ids"]) == N
    (folder / "long.txt").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heads", type=int, default=1, help="heads computed at a time (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "long-bert"
        build(folder)
        proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(Path(tmp) / "long.attn"),
                               str(args.heads)], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(proc.stderr[-3000:])
        result = json.loads(lines[-1])
    naive_att = LAYERS * HEADS * N * N * 4 / 2**20
    naive = naive_att + LAYERS * N * N * 4 / 2**20
    print(f"{LAYERS} layers x {HEADS} heads, {result['tokens']} tokens, head chunk {args.heads}; naive float32 "
          f"attention {naive_att:.0f} MB, with float32 rollout {naive:.0f} MB; session {result['session_mb']:.0f} MB")
    for s in result["steps"]:
        print(f"  {s['step']:<40} {s['seconds']:7.2f} s   peak RSS {s['peak_mb']:7.0f} MB "
              f"(ratio to naive {s['peak_mb'] / naive:.3f})   now {s['now_mb']:7.0f} MB")


if __name__ == "__main__":
    main()
