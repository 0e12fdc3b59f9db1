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


