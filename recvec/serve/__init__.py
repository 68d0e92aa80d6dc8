"""``recvec serve``: an HTTP service answering from an index artifact (FastAPI on uvicorn).

- ``config.py``  ServeConfig / Limits (frozen; what the flags set)
- ``holder.py``  IndexHolder: the served snapshot, loaded beside the old one and swapped atomically
- ``queries.py`` request ids and parameters -> Recommender calls -> the ``query --json`` shape
- ``metrics.py`` Prometheus counters, latency histogram, artifact version
- ``app.py``     the FastAPI application: routes, error shapes, body limit, thread pool
- ``server.py``  uvicorn: socket, workers, signals (graceful shutdown on SIGTERM)

FastAPI, uvicorn and prometheus_client are imported by these modules only, and they are imported
only by ``recvec serve`` (``recvec --help`` loads none of them)."""
