"""Storage: session files and the model library."""
