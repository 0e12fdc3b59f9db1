"""attn_desktop.core must import with Qt and pyqtgraph unavailable."""

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6"}:
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
import attn_desktop.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "attn_desktop.core.")]
for name in names:
    importlib.import_module(name)
assert not any(m.split(".")[0] in {"PySide6", "pyqtgraph"} for m in sys.modules)
print(len(names))
"""


def test_core_imports_without_qt():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 8
