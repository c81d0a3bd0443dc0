"""``python -m extremefast``: the command line."""
from .cli import entry

entry()
