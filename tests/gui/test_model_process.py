"""The window and its model process: after the process was killed, the next analysis restarts
it, reloads the model and says so; the window keeps showing the model as loaded."""

import os
import signal

import numpy as np
import psutil
from conftest import ANALYSIS_TIMEOUT


def test_analysis_after_the_model_process_was_killed_reloads_the_model(window, load, analyse,
                                                                         tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    before = analyse(window, "The tenant pays the rent.", type_it=False)
    pid = window.engine.pid
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: window.engine.pid is None, timeout=10_000)
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT) as blocker:
        window.request_analysis()
    after = blocker.args[0].analysis
    assert window.engine.pid not in (None, pid) and psutil.pid_exists(window.engine.pid)
    np.testing.assert_array_equal(after.arrays["attentions"], before.analysis.arrays["attentions"])
    level, message = window.messages.history[-1]
    assert level == "warning" and message.startswith("The model process had stopped; it was restarted")
    assert window.loaded is not None and "bert" in window.status_model.text()
