"""The time estimate and the bar of a document-level explanation (core.explain.document_progress),
driven with a fake clock through the calls core.explain.document.explain makes, with units of
different costs per kind: a window forward, a row with gradients, a leave-one-out row. The expected
times are summed here from the simulated costs."""

import pytest

from attn_desktop.core.explain import document_progress as dp

W = 4  # windows, all of the same length
IG_BATCH = 4  # alphas per IG batch
LOO_ROWS = 120
LOO_BATCH = 8


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(forward: float, gradient: float, loo_row: float, *, probe=(1.0, 2.5), rounds=(16, 32),
             ig_steps="auto", overhead: float = 0.5):
    """One run of target, attention, IG (`rounds` run; adaptive 16..64) and leave-one-out whose units
    really cost `forward` (a window forward), `gradient` (a window row with gradients) and `loo_row`;
    the calibration measures `probe`. Returns (clock, bar, reports [(time, bar, message, seconds left)])."""
    clock = Clock()
    reports = []
    bar = dp.DocumentProgress(lambda f, m: reports.append((clock.t, f, m, bar.seconds_left())), clock=clock)
    run = ["ig", "loo"]
    steps = ["target", "attention", "ig", "loo", "verdict"]
    planned = dp.ig_rounds(ig_steps, 16, 64)[:dp.PLANNED_ROUNDS]
    per_step = 2.0 * W  # IG in one graph: about two forwards per step and window
    bar.set_plan(dp.plan(run, W, sum(planned), per_step, LOO_ROWS), steps)

    bar.at("target", 0.0, "resolving the document target")
    clock.t += overhead + W * forward  # the labels' embeddings, then one forward per window
    bar.at("target", 1.0, "the document target done")
    bar.calibrate(dp.Calibration(forward=probe[0], gradient=probe[1]))
    bar.estimate("ig, loo", W, ig_rounds=planned if ig_steps == "auto" else None)
    bar.at("attention", 0.0, "attention")
    clock.t += 0.05 * W * forward
    bar.at("attention", 1.0, "attention done")

    bar.at("ig", 0.0, "Integrated Gradients over the document")
    clock.t += 2 * W * forward  # f(input), f(baseline)
    forwards = 2.0 * W
    bar.extra = max(0.0, forwards + rounds[0] * per_step - bar.units["ig"])
    bar.at("ig", 0.0, "f(input) and f(baseline)", units_done=forwards)
    shares = dp.round_shares(dp.ig_rounds(ig_steps, 16, 64))
    for r, k in enumerate(rounds):
        lo, hi = shares[r]
        for start in range(0, k, IG_BATCH):
            d = min(k, start + IG_BATCH)
            clock.t += (d - start) * W * gradient
            bar.extra = max(0.0, forwards + k * per_step - bar.units["ig"])
            bar.at("ig", lo + (hi - lo) * d / k, f"IG {d}/{k}", units_done=forwards + d * per_step)
        forwards += k * per_step
    bar.at("ig", 1.0, "Integrated Gradients done")

    bar.at("loo", 0.0, "leave-one-out")
    for start in range(0, LOO_ROWS, LOO_BATCH):
        d = min(LOO_ROWS, start + LOO_BATCH)
        clock.t += (d - start) * loo_row
        bar.at("loo", d / LOO_ROWS, f"leave-one-out {d}/{LOO_ROWS}", units_done=d)
    bar.at("loo", 1.0, "leave-one-out done")
    bar.at("verdict", 0.0, "verdict")
    clock.t += 0.001 * W * forward
    bar.at("verdict", 1.0, "verdict done")
    return clock, bar, reports


def test_exact_calibration_gives_the_true_time_and_time_shares_of_the_bar():
    forward, gradient = 1.0, 2.5
    clock, bar, reports = simulate(forward, gradient, forward, probe=(forward, gradient))
    total = clock.t
    target_end = 0.5 + W * forward
    # what the run costs after the target, summed from the simulated costs
    after = 0.05 * W * forward + 2 * W * forward + (16 + 32) * W * gradient + LOO_ROWS * forward + 0.001 * W * forward
    assert total == pytest.approx(target_end + after)
    said = [r for r in reports if r[2].startswith(dp.ESTIMATE_PREFIX)]
    assert len(said) == 1 and said[0][3] == pytest.approx(after)
    assert "Integrated Gradients counted at 16 + 32 steps: less if it converges sooner" in said[0][2]
    for t, _, message, left in reports:
        if left is not None:  # every estimate from the calibration on is the truth
            assert t + left == pytest.approx(total), message
    # the bar after the target moves by time: the remaining share is spread over the predicted time
    at_target_end = next(f for t, f, m, _ in reports if m == "the document target done")
    ig_end = next(f for t, f, m, _ in reports if m.startswith("Integrated Gradients done"))
    ig_time = 0.05 * W * forward + 2 * W * forward + 48 * W * gradient
    assert ig_end == pytest.approx(at_target_end + (1 - at_target_end) * ig_time / after)
    for t, f, message, _ in reports:
        if t > target_end:
            assert f == pytest.approx(at_target_end + (1 - at_target_end) * (t - target_end) / after), message
    assert reports[-1][1] == 1.0


def test_estimate_converges_and_stays_steady_when_kinds_cost_other_than_predicted():
    # IG's rows cost 30% more than the probe said, leave-one-out's rows (batched) 40% less
    forward, gradient, loo_row = 1.0, 3.25, 0.6
    clock, bar, reports = simulate(forward, gradient, loo_row, probe=(1.0, 2.5))
    total = clock.t
    said = [(t, m, left) for t, _, m, left in reports if left is not None and t < total]
    ratios = [(t + left) / total for t, _, left in said]
    # the first estimate is off by the calibration's errors, within a factor of 1.5
    assert 1 / 1.5 < ratios[0] < 1.5
    # a step's first unit (52 s of IG's rows, 4.8 s of leave-one-out's) moves the estimate by no
    # more than the prediction was off; from its second unit on, no swing larger than 5%
    seen: dict[str, int] = {}
    for (_t, m, _), a, b in zip(said[1:], ratios, ratios[1:], strict=False):
        kind = m.split()[0]
        seen[kind] = seen.get(kind, 0) + ("/" in m.split(" · ")[0])  # units done: "IG 8/16", "leave-one-out 8/120"
        swing = max(b / a, a / b)
        assert swing < max(gradient / 2.5, 1.0 / loo_row), m
        if seen[kind] >= 2 and kind in ("IG", "leave-one-out"):
            assert swing < 1.05, m
    # IG's pace ends at its own: a step is one row with gradients in every window, two planned
    # forwards per window
    assert bar.pace("ig") == pytest.approx(W * gradient / (2 * W), rel=0.01)
    # after a third of leave-one-out's rows, within 10% of the time left
    t, m, left = next((t, m, left) for t, m, left in said if m.startswith(f"leave-one-out {LOO_ROWS // 3}"))
    assert left / (total - t) == pytest.approx(1.0, rel=0.10)
    # the bar never goes back, ends at 1
    values = [f for _, f, _, _ in reports]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)) and values[-1] == 1.0


def test_a_machine_slower_than_at_the_calibration_is_followed_before_the_next_step_runs():
    # every unit costs twice what the calibration measured (another process took a core since)
    clock, bar, reports = simulate(2.0, 5.0, 2.0, probe=(1.0, 2.5))
    total = clock.t
    after_target = total - (0.5 + W * 2.0)
    first = next(left for _, _, m, left in reports if m.startswith(dp.ESTIMATE_PREFIX))
    assert first == pytest.approx(after_target / 2)  # the calibration's times, the ratios of kinds right
    # from IG's second batch on, leave-one-out (not run yet) is predicted at the speed measured
    start = next(i for i, (_, _, m, _) in enumerate(reports) if m.startswith("IG 8/16 "))
    for t, _, m, left in reports[start:]:
        if t < total:
            assert (t + left) / total == pytest.approx(1.0, rel=0.05), m
    assert bar.pace("loo") == pytest.approx(2.0, rel=0.01)


def test_rounds_beyond_the_plan_slow_the_bar_and_raise_the_estimate_never_back():
    forward, gradient = 1.0, 2.5
    clock, bar, reports = simulate(forward, gradient, forward, probe=(forward, gradient), rounds=(16, 32, 64))
    values = [f for _, f, _, _ in reports]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)) and values[-1] == 1.0
    # the third round's forwards count in the time left as soon as it starts
    first = next((t, left) for t, _, m, left in reports if m.startswith("IG 4/64 "))
    total = clock.t
    assert first[0] + first[1] == pytest.approx(total)
    assert any(m.startswith("IG 64/64") for _, _, m, _ in reports)


def test_ig_converging_early_moves_the_bar_over_the_skipped_round():
    clock, bar, reports = simulate(1.0, 2.5, 1.0, probe=(1.0, 2.5), rounds=(16,))
    before = next(f for _, f, m, _ in reports if m.startswith("IG 16/16 "))
    done = next(f for _, f, m, _ in reports if m.startswith("Integrated Gradients done"))
    # the skipped second round (32 steps) was predicted at 32 x W x 2.5 s of the time left
    left_then = next(left for _, _, m, left in reports if m.startswith("IG 16/16 "))
    share = 32 * W * 2.5 / left_then
    assert done == pytest.approx(before + (1 - before) * share)
    after = next((t, left) for t, _, m, left in reports if m.startswith("Integrated Gradients done"))
    assert after[0] + after[1] == pytest.approx(clock.t)


def test_no_time_left_before_the_calibration_and_honest_rounding():
    clock = Clock()
    said = []
    bar = dp.DocumentProgress(lambda f, m: said.append(m), clock=clock)
    bar.set_plan(dp.plan(["loo"], 2, 0, 4.0, 10), ["target", "attention", "loo", "verdict"])
    bar.at("target", 0.0, "target")
    clock.t += 1.0
    bar.at("target", 1.0, "target done")
    assert bar.seconds_left() is None and not any("left" in m for m in said)
    bar.calibrate(dp.Calibration(0.5))
    bar.at("attention", 0.0, "attention")
    assert said[-1].endswith("· under 10 s left")  # 10 rows x 0.5 s and a little
    assert bar.seconds_left() == pytest.approx(0.5 * (0.1 + 10 + 0.002))
    assert [dp.rough_duration(s) for s in (0.2, 4.4, 47, 95, 130, 545, 6000, 7 * 3600 + 1600)] == [
        "1 s", "4 s", "45 s", "1.5 min", "2 min", "9 min", "1 h 40 min", "7 h 30 min"]
    assert dp.roughly(12) == "about 10 s" and dp.roughly(3) == "under 10 s"


def test_predicted_paces_follow_the_calibration_and_window_lengths():
    p = dp.plan(["saliency", "ig", "loo"], 3, 48, 6.0, 30, lengths=[100, 100, 50], loo_rows_per_window=[12, 12, 6])
    cal = dp.Calibration(forward=0.2, batched=0.1, gradient=0.5, rows=8)
    paces = p.predicted(cal)
    scale = 250 / 300  # the mean window against the longest
    assert paces["target"] == pytest.approx(0.2 * scale)  # one row alone
    assert paces[dp.IG_ENDS] == pytest.approx(0.2 * scale)
    # one IG step is one row with gradients through every window: 6 planned forwards
    assert paces["ig"] * 6.0 == pytest.approx(3 * 0.5 * scale)
    assert paces["saliency"] * 9.0 == pytest.approx(3 * 0.5 * scale)
    # leave-one-out's rows are batched, each of its window's length
    assert paces["loo"] == pytest.approx(0.1 * (24 * 100 + 6 * 50) / (30 * 100))
    # windows that do not fit one graph: one more (batched) forward per window and step
    q = dp.plan(["ig"], 3, 48, 9.0, 0, lengths=[100, 100, 50])
    assert q.predicted(cal)["ig"] * 9.0 == pytest.approx(3 * (0.5 + 0.1) * scale)
    with pytest.raises(ValueError):
        p.predicted(dp.Calibration(forward=0.2))


def test_measure_times_a_forward_and_a_gradient_on_a_real_model(loaded_models):
    import numpy as np

    from attn_desktop.core.explain import document

    loaded = loaded_models("bert")
    tok = loaded.tokenizer
    windows = [tok("the tenant pays the rent")["input_ids"], tok("on the first day")["input_ids"]]
    index = [np.array([-1] + list(range(len(w) - 2)) + [-1]) for w in windows]
    target = document.resolve(loaded, windows, index, {"labels": ["rent", "animals"]})
    cal = dp.measure(loaded, target, batch_rows=32, gradient_rows=4)
    assert cal.forward > 0 and cal.batched > 0 and cal.gradient > 0 and cal.rows == dp.PROBE_ROWS
    # two single rows (the least kept), 8 batched rows, one row and 4 batched rows with gradients
    assert cal.spent >= 2 * cal.forward + dp.PROBE_ROWS * cal.batched + 4 * cal.gradient
    alone = dp.measure(loaded, target, batch_rows=1)
    assert alone.gradient is None and alone.rows == 1 and alone.row == alone.forward


def test_the_windows_capture_gets_the_share_of_its_forwards():
    # 3 windows holding 20, 20 and 10 document tokens, 2 special tokens each: 56 tokens, IG's 32
    # rows in one graph (2 forwards per step and window); IG's planned rounds 2 and 4 steps
    share = dp.capture_share(["ig", "loo"], {"ig_start_steps": 2, "ig_max_steps": 8}, [20, 20, 10], 2)
    explain = 3 + 0.15 + (2 * 3 + (2 + 4) * 2 * 3) + 50 + 0.003  # target, attention, IG, LOO, verdict
    assert share == pytest.approx(3 / (3 + explain))
    # saliency alone: one gradient pass (3 forwards) per window
    assert dp.capture_share(["saliency"], None, [20, 20, 10], 2) == pytest.approx(3 / (3 + 3 + 0.15 + 9 + 0.003))
    # with agreement, its (small) step counts too
    assert dp.capture_share(["saliency", "agreement"], None, [20, 20, 10], 2) == pytest.approx(
        3 / (3 + 3 + 0.15 + 9 + 0.03 + 0.003))


def test_windowed_run_gives_the_windows_a_small_part_of_the_bar(loaded_models):
    from attn_desktop.core.pipeline import analyze

    loaded = loaded_models("bert")
    text = " ".join(["The tenant shall pay the rent on the first day of each month."] * 6)
    seen = []
    an = analyze(loaded, text, windows={"size": 24}, methods=["ig", "loo"], target={"labels": ["rent", "animals"]},
                 explain_options={"ig_steps": 4}, progress=lambda f, m: seen.append((f, m)))
    held = [e["token_end"] - e["token_start"] for e in an.manifest["windows"]["windows"]]  # document tokens
    windows = len(held)
    last = max(f for f, m in seen if m.startswith("window "))
    explain = windows + 0.05 * windows + (2 * windows + 4 * 2 * windows) + sum(held) + 0.001 * windows
    assert last == pytest.approx(windows / (windows + explain), rel=1e-6)
    values = [f for f, _ in seen]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)) and values[-1] == 1.0
