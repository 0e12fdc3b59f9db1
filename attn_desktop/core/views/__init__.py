"""Qt-free logic the window's views share: words from word pieces (words), the max-pooled overview of
large matrices (pooling), and layer-at-a-time reads of attention mapped from files (mapped_arrays)."""
