"""Token backgrounds for signed values on a diverging colour map centred at zero."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor

from .editor import MAX_ALPHA, TokenColors, _luminance, luminance


class SignedTokenColors(TokenColors):
    """Like TokenColors, but `fractions` place zero at 0.5: the colour is the map's colour at the
    value and the strength is the distance from zero, so tokens near zero keep the page colour
    and both signs stand out equally."""

    def __init__(self, fractions: np.ndarray, lut: np.ndarray, base: QColor, text: QColor) -> None:
        f = np.nan_to_num(np.asarray(fractions, dtype=np.float64), nan=0.5)
        strength = np.abs(2.0 * f - 1.0)
        self.shown = strength >= 0.02
        alpha = (MAX_ALPHA * strength)[:, None]
        page = np.array([base.red(), base.green(), base.blue()], np.float64)
        mapped = lut[np.clip(np.rint(f * 255), 0, 255).astype(np.intp)].astype(np.float64)
        self.rgb = np.rint(page * (1 - alpha) + mapped * alpha).astype(np.uint8)
        lum = _luminance(self.rgb.astype(np.float64))
        text_lum = luminance(text)
        hi, lo = np.maximum(lum, text_lum), np.minimum(lum, text_lum)
        self.recolour = self.shown & ((hi + 0.05) / (lo + 0.05) < 4.5)
        self.dark_text = lum > 0.179
