"""The ``recvec bench`` benchmarks: latency and accuracy runs, baselines, stored results, reports."""
