from .random_walker import random_walker, random_walker_batch

__all__ = ["random_walker", "random_walker_batch"]
