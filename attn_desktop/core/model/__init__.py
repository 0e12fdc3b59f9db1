"""The model side: folder checks, loading, the model process, the capture engine, offline mode, weight hashes."""
