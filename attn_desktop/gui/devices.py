"""What this machine offers: CUDA for inference, OpenGL for the heatmap viewport."""

from __future__ import annotations


def opengl_available() -> bool:
    from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

    if QGuiApplication.platformName() in ("offscreen", "minimal"):
        return False
    context = QOpenGLContext()
    if not context.create():
        return False
    surface = QOffscreenSurface()
    surface.create()
    ok = context.makeCurrent(surface)
    context.doneCurrent()
    return bool(ok)


def available_devices() -> list[str]:
    """Run in a worker, after torch is imported by the model load."""
    devices = ["cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            devices.append("cuda")
    except Exception:
        pass
    return devices
