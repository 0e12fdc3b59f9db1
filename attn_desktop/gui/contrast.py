"""WCAG 2 contrast ratio between two colours (Qt-free: '#rrggbb' strings or (r, g, b) 0-255)."""

from __future__ import annotations

AA_TEXT = 4.5  # WCAG AA, normal text
AA_GRAPHICS = 3.0  # WCAG AA, non-text: frames, focus boxes


def _rgb(c) -> tuple[int, int, int]:
    if isinstance(c, str):
        h = c.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if hasattr(c, "red"):  # a QColor
        return c.red(), c.green(), c.blue()
    r, g, b = c[:3]
    return int(r), int(g), int(b)


def relative_luminance(c) -> float:
    def channel(v: int) -> float:
        s = v / 255.0
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = _rgb(c)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(a, b) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def mix(a, b, t: float) -> tuple[int, int, int]:
    """a blended towards b by t (0: a, 1: b)."""
    ra, rb = _rgb(a), _rgb(b)
    return tuple(round(x + (y - x) * t) for x, y in zip(ra, rb, strict=True))  # type: ignore[return-value]


def muted(text, background, minimum: float = AA_TEXT) -> tuple[int, int, int]:
    """The text colour faded towards the background as far as `minimum` contrast allows: for
    secondary text that must stay readable."""
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        if contrast_ratio(mix(text, background, mid), background) >= minimum:
            lo = mid
        else:
            hi = mid
    return mix(text, background, lo)


def secondary_color(palette, text_role: str = "WindowText", background_role: str = "Window"):
    """A QColor for secondary text (captions, notes): the palette's text faded towards its
    background while keeping AA contrast. Replaces setEnabled(False), whose grey failed it."""
    from PySide6.QtGui import QColor, QPalette

    text = palette.color(getattr(QPalette, text_role))
    background = palette.color(getattr(QPalette, background_role))
    return QColor(*muted(text, background, AA_TEXT + 0.3))


def make_secondary(widget) -> None:
    """Draw a label's text in the secondary colour (see secondary_color)."""
    from PySide6.QtGui import QPalette

    pal = widget.palette()
    pal.setColor(QPalette.WindowText, secondary_color(pal))
    widget.setPalette(pal)


def readable_disabled(palette) -> None:
    """Disabled text at WCAG AA too: Qt's default disabled grey (#bebebe on #efefef, 1.6:1) is
    used for captions and hints people need to read ("Load a model to ..."). It stays lighter
    than enabled text, so the difference still shows."""
    from PySide6.QtGui import QPalette

    for text_role, background_role in (("WindowText", "Window"), ("Text", "Base"), ("ButtonText", "Button")):
        role = getattr(QPalette, text_role)
        palette.setColor(QPalette.Disabled, role,
                         secondary_color(palette, text_role, background_role))
