__version__ = "0.1.0"

# Checkpoints and caches carry these; a reader refuses anything else.
CHECKPOINT_FORMAT = 2
CACHE_SCHEMA = 1
