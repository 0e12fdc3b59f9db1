"""About dialog: what this is and which versions it runs on (read without importing torch)."""

from __future__ import annotations

import platform
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMessageBox, QWidget

from .. import __version__

PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "pyqtgraph", "safetensors")


def versions() -> dict[str, str]:
    out = {"attn-desktop": __version__, "Python": platform.python_version(),
           "Qt": qVersion(), "PySide6": pyside_version}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def show_about(parent: QWidget | None) -> None:
    rows = "".join(f"<tr><td>{k}</td><td>&nbsp;{v}</td></tr>" for k, v in versions().items())
    QMessageBox.about(
        parent, "About attn-desktop",
        "<h3>attn-desktop</h3>"
        "<p>Offline inspection of attention in local Transformer models. Attention is a clue, "
        "not proof: compare it with rollout, flow and attributions.</p>"
        "<p>Nothing is ever sent over the network.</p>"
        f"<table>{rows}</table>",
    )
