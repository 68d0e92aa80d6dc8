"""recvec: vector-index retrieval for recommendations."""

__version__ = "0.1.0"
