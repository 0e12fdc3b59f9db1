"""A 4096-token analysis in the real window on a small random long-context BERT (2 layers, 4 heads,
4096 positions), models run in the model process as for the user: the window maps the attention
the model process wrote (float16, read-only, never a copy), shows it, switches layers, computes the
rollout layer by layer on disk, saves the session and reopens it mapped, and shows it again.
The window process's numpy allocations (tracemalloc) stay below the float32 [L, n, n] stack that
the in-memory path holds for the head means alone (and far below the [L, H, n, n] stack)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PySide6.QtCore import QRectF

from attn_desktop.core.views.mapped_arrays import file_region, is_mapped
from attn_desktop.gui.measures import MEASURES

TIMEOUT = 300_000
LAYERS, HEADS, N = 2, 4, 4096


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    import tiny_models
    import torch
    import transformers as tf

    folder = tmp_path_factory.mktemp("long") / "long-bert"
    torch.manual_seed(0)
    tok = tiny_models._wordpiece_tokenizer()
    tok.model_max_length = N
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=64, max_position_embeddings=N)
    tf.BertModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    words = ["pay", "the", "rent", "."]  # one piece each in this vocabulary
    text = " ".join(words[k % 4] for k in range(N - 2))
    assert len(tok(text)["input_ids"]) == N
    return folder, text


def head_mean(att, layer) -> np.ndarray:
    """Independent: the mean over heads of one layer, from the stored float16 values."""
    return np.mean(np.asarray(att[layer], dtype=np.float32), axis=0)


def test_a_4096_token_analysis_shows_from_mapped_files_and_its_session_reopens_mapped(
        window, load, long_model, qtbot, tmp_path):
    folder, text = long_model
    load(window, folder)
    window.state.update(words=False, measure="attention", head="mean", layer=0)
    peaks = []

    def in_window(step):
        """Run a step of the window's; note the most it allocated over what was held before."""
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        peaks.append(tracemalloc.get_traced_memory()[1] - before)

    tracemalloc.start()
    try:
        shown = qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT)
        in_window(lambda: (window.document.editor.setPlainText(text), shown.wait()))
        an = shown.args[0].analysis
        att = an.arrays["attentions"]
        # the window maps what the model process wrote: float16, read-only, no copy in this process
        assert is_mapped(att) and att.dtype == np.float16 and att.shape == (LAYERS, HEADS, N, N)
        assert not att.flags.writeable
        assert is_mapped(an.arrays["head_mean"]) and an.arrays["head_mean"].dtype == np.float16
        assert "storage" in an.manifest["capture"]
        assert window.heatmap.values is not None and window.heatmap.values.shape == (N, N)
        np.testing.assert_allclose(window.heatmap.values, head_mean(att, 0), atol=1e-3)
        assert shown.args[0].thumbnails["self"].shape == (LAYERS, HEADS, 48, 48)

        editor = window.document.editor  # one paragraph of 4096 tokens: only its visible lines are drawn
        clip = editor.viewport().rect()
        drawn = {i for i, _ in editor.visible_token_rects(clip)}
        seen = {i for i in range(len(editor.tokens)) if editor.colors.shown[i]
                and any(r.intersects(QRectF(clip)) for r in editor.token_rects(i))}
        assert seen and seen <= drawn and len(drawn) < N // 4

        in_window(lambda: window.state.update(layer=1))  # layer switch
        np.testing.assert_allclose(window.heatmap.values, head_mean(att, 1), atol=1e-3)
        in_window(lambda: window.state.update(head=2))  # one head, read from the mapping
        np.testing.assert_array_equal(window.heatmap.values, np.asarray(att[1, 2]))
        in_window(lambda: window.state.update(head="max"))
        np.testing.assert_array_equal(window.heatmap.values, np.asarray(att[1]).max(axis=0).astype(np.float32))
    finally:
        tracemalloc.stop()
    lnn_float32 = LAYERS * N * N * 4
    assert max(peaks) < lnn_float32, f"the window allocated {[round(p / 2**20) for p in peaks]} MB"

    # rollout: layer by layer into a float16 file of the compute process, mapped here
    with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
        window.state.update(measure="rollout", head="mean")
    rollout = an.arrays["rollout"]
    assert is_mapped(rollout) and rollout.dtype == np.float16 and rollout.shape == (LAYERS, N, N)
    rows = slice(0, 64)  # a band of rows of R_1 = hat_1 @ hat_0 (the whole product is the benchmark's)

    def hat(mean):
        h = 0.5 * mean
        h[np.arange(len(h)), rows.start + np.arange(len(h))] += 0.5
        return h / h.sum(axis=1, keepdims=True)

    expected = hat(np.mean(np.asarray(att[1, :, rows], np.float32), axis=0)) @ hat(head_mean(att, 0))
    window.state.update(layer=1)
    np.testing.assert_allclose(window.heatmap.values[rows], expected, atol=2e-3)
    del expected

    path = tmp_path / "long.attn"
    with qtbot.waitSignal(window.session_saved, timeout=TIMEOUT):
        window.save_session(str(path))
    window.state.update(measure="attention", head="mean", layer=0)
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT) as reopened:
        window.open_session(str(path))
    back = reopened.args[0].analysis
    assert reopened.args[0].source == str(path)
    back_att = back.arrays["attentions"]
    assert is_mapped(back_att) and file_region(back_att).path == str(path)  # mapped from the session file
    np.testing.assert_array_equal(np.asarray(back_att[1, 3, 100]), np.asarray(att[1, 3, 100]))
    assert window.state.sel.measure == "rollout"  # shown as saved
    assert MEASURES["rollout"].ready(back, window.state.sel)
    np.testing.assert_array_equal(window.heatmap.values, np.asarray(rollout[window.state.sel.layer]))
    window.state.update(measure="attention", head="mean", layer=0)
    np.testing.assert_allclose(window.heatmap.values, head_mean(back_att, 0), atol=1e-3)
    window.state.update(layer=1)
    np.testing.assert_allclose(window.heatmap.values, head_mean(back_att, 1), atol=1e-3)
    diag = reopened.args[0].diagnostics["self"]
    assert diag.entropy.shape == (LAYERS, HEADS) and np.isfinite(diag.entropy).all()
