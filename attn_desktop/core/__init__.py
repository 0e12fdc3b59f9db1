"""Science and I/O of attn-desktop. Never imports Qt or pyqtgraph."""
