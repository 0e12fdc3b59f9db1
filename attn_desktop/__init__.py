"""attn-desktop: offline inspection of attention in local Transformer models."""

from attn_desktop.core.model.offline import ensure_offline

__version__ = "0.1.0"

ensure_offline()
