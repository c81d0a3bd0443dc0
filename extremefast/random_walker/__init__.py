from .random_walker import random_walker

__all__ = ["random_walker"]
