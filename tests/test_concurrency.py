"""Concurrent queries and reloads.

- One loaded index (flat, HNSW, IVF; ALS artifacts built from the synthetic dataset by the CLI)
  answers from 8 threads at once -- raw searches with per-call efSearch/nprobe and exclusions, and
  Recommender calls (histories excluded, similar items, query vectors) -- exactly as sequential
  calls do, and the shared index's own efSearch/nprobe are unchanged afterwards (per-call FAISS
  SearchParameters, nothing set on the shared index).
- Reloads do not mix artifacts: a loaded index is an immutable in-memory snapshot. Threads that
  query the current snapshot while a new artifact is published at the same path and re-opened get,
  for every query, exactly the old or exactly the new artifact's answer; loads racing repeated
  publishes (locally and on S3) each get one version whole.
"""

from __future__ import annotations

import itertools
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from recvec.indexes.artifact import load_artifact, save_artifact
from recvec.indexes.build import open_index
from recvec.indexes.manifest import RESERVED_KEYS

THREADS = 8
SPECS = ("flat", "hnsw16", "ivf16")


def _build(data: Path, out: Path | str, spec: str, factors: int) -> None:
    res = CliRunner().invoke(main, ["build", "--data", str(data), "--out", str(out), "--index", spec,
                                    "--factors", str(factors), "--iterations", "3", "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def built(tmp_path_factory, synthetic_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("concurrency")
    out = {}
    for spec in SPECS:
        _build(synthetic_dir, root / spec, spec, 16)
        out[spec] = root / spec
    _build(synthetic_dir, root / "other", "flat", 8)  # another model over the same items
    out["other"] = root / "other"
    return out


def _run_threads(fn, n_tasks: int) -> list:
    """fn(thread_no) in THREADS threads that start together; their results in thread order."""
    barrier = threading.Barrier(THREADS)

    def task(t):
        barrier.wait(timeout=60)
        return fn(t)

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(task, range(n_tasks)))


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("spec", SPECS)
def test_index_search_from_8_threads_matches_sequential(built, spec, reliability_counts):
    reference = load_artifact(built[spec]).index  # sequential answers
    shared = load_artifact(built[spec]).index  # a fresh copy (cold lazy caches) for the threads
    n, dim = reference.ntotal, reference.dim
    rng = np.random.default_rng(0)
    calls = []
    for i in range(64):
        q = rng.standard_normal((1 + i % 3, dim)).astype(np.float32)
        exclude = [rng.choice(n, size=int(rng.integers(0, 300)), replace=False) for _ in q] if i % 2 else None
        params = {"hnsw16": {"ef_search": (16, 40, 128, None)[i % 4]},
                  "ivf16": {"nprobe": (1, 3, 16, None)[i % 4]}}.get(spec, {})
        calls.append((q, 10, exclude, params))
    want = [reference.search(q, k, exclude=ex, **p) for q, k, ex, p in calls]
    core = shared.faiss_index
    before = (getattr(shared._hnsw, "efSearch", None), getattr(shared._ivf, "nprobe", None))

    def worker(t):
        order = np.random.default_rng(100 + t).permutation(len(calls) * 2) % len(calls)
        return [(j, shared.search(calls[j][0], calls[j][1], exclude=calls[j][2], **calls[j][3])) for j in order]

    results = [r for per_thread in _run_threads(worker, THREADS) for r in per_thread]
    bad = [j for j, got in results if not _same(got, want[j])]
    assert not bad, f"{len(bad)} of {len(results)} concurrent searches differ from sequential ones (calls {bad[:5]})"
    assert (getattr(shared._hnsw, "efSearch", None), getattr(shared._ivf, "nprobe", None)) == before
    assert shared.faiss_index is core
    reliability_counts["concurrent queries checked against sequential (8 threads)"] += len(results)


@pytest.mark.parametrize("spec", ["flat", "hnsw16"])
def test_recommender_from_8_threads_matches_sequential(built, spec, reliability_counts):
    reference = open_index(str(built[spec])).recommender
    shared = open_index(str(built[spec])).recommender
    ids = reference.items.ids
    rng = np.random.default_rng(1)
    params = {"ef_search": 24} if spec.startswith("hnsw") else {}
    histories = [rng.choice(ids, size=int(rng.integers(0, 60)), replace=False).tolist() for _ in range(48)]
    vectors = rng.standard_normal((8, reference.index.dim)).astype(np.float32)

    def answers(rec, t: int | None = None) -> list[tuple]:
        idx = range(len(histories)) if t is None else np.random.default_rng(t).permutation(len(histories))
        out = {}
        for i in idx:
            r = rec.recommend(histories[i], 10, **params)
            s = rec.similar(int(ids[i]), 5, **params)
            out[int(i)] = (r.ids.tobytes(), r.scores.tobytes(), r.fallback, s.ids.tobytes(), s.scores.tobytes())
        batch = rec.recommend_batch(histories, 10, **params)
        vec = rec.search_vectors(vectors, 7, **params)
        return [out[i] for i in sorted(out)] + [(b.ids.tobytes(), b.scores.tobytes()) for b in batch + vec]

    want = answers(reference)
    got = _run_threads(lambda t: answers(shared, t), THREADS)
    assert all(g == want for g in got), "a concurrent Recommender call differs from the sequential one"
    reliability_counts["concurrent queries checked against sequential (8 threads)"] += THREADS * len(want)


def _fingerprint(loaded, histories) -> tuple:
    return tuple((r.ids.tobytes(), r.scores.tobytes()) for r in loaded.recommender.recommend_batch(histories, 10))


def test_reload_while_querying_never_mixes_artifacts(built, synthetic_dir, tmp_path, reliability_counts):
    """8 threads query whatever snapshot is current while the main thread builds a new artifact at
    the same path (the CLI, in process) and swaps in the re-opened index."""
    live = tmp_path / "live"
    shutil.copytree(built["flat"], live)
    current = [open_index(str(live))]
    ids = current[0].artifact.item_ids
    rng = np.random.default_rng(2)
    histories = [rng.choice(ids, size=int(rng.integers(1, 40)), replace=False).tolist() for _ in range(40)]
    old_answers = [_fingerprint(current[0], [h])[0] for h in histories]
    stop = threading.Event()
    swapped = threading.Event()

    def worker(t):
        seen, after_swap = [], 0
        for i in itertools.cycle(np.random.default_rng(t).permutation(len(histories))):
            if stop.is_set() and after_swap >= 20:
                return seen
            snapshot = current[0]  # one snapshot per query: whatever is current now
            r = snapshot.recommender.recommend(histories[i], 10)
            seen.append((int(i), (r.ids.tobytes(), r.scores.tobytes())))
            after_swap += swapped.is_set()

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, t) for t in range(THREADS)]
        _build(synthetic_dir, live, "flat", 8)  # publish a new artifact where the old one is loaded from
        old = current[0]
        current[0] = open_index(str(live))
        swapped.set()
        stop.set()
        seen = [x for f in futures for x in f.result(timeout=120)]
    new_answers = [_fingerprint(current[0], [h])[0] for h in histories]
    assert sum(a != b for a, b in zip(old_answers, new_answers)) > len(histories) // 2
    assert [_fingerprint(old, [h])[0] for h in histories] == old_answers  # the old snapshot is unchanged
    kinds = [("old" if got == old_answers[i] else "new" if got == new_answers[i] else "MIXED") for i, got in seen]
    assert "MIXED" not in kinds, f"{kinds.count('MIXED')} answers match neither artifact"
    assert "old" in kinds and "new" in kinds
    reliability_counts["queries during a reload checked (old or new, never mixed)"] += len(kinds)


def _head(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in RESERVED_KEYS}


def _publisher(dest, versions: list, rounds: int, endpoint_url: str | None = None):
    def publish():
        for i in range(rounds):
            a = versions[i % len(versions)]
            save_artifact(dest, index=a.index, item_ids=a.item_ids, arrays=a.arrays, catalog=a.catalog,
                          manifest=_head(a.manifest), endpoint_url=endpoint_url)
    return publish


def _loads_racing_publishes(dest, built, endpoint_url, rounds: int) -> int:
    from recvec.indexes.build import recommender_from_artifact

    versions = [load_artifact(built["flat"]), load_artifact(built["other"])]
    save_artifact(dest, index=versions[0].index, item_ids=versions[0].item_ids, arrays=versions[0].arrays,
                  catalog=versions[0].catalog, manifest=_head(versions[0].manifest), endpoint_url=endpoint_url)
    ids = versions[0].item_ids
    histories = [ids[i: i + 7].tolist() for i in range(0, 70, 7)]

    def fp(a) -> tuple:
        recs = recommender_from_artifact(a).recommend_batch(histories, 10)
        return tuple((r.ids.tobytes(), r.scores.tobytes()) for r in recs)

    wanted = [fp(v) for v in versions]
    done = threading.Event()

    def loader(t):
        got = []
        while not done.is_set() or not got:
            got.append(fp(load_artifact(dest, endpoint_url=endpoint_url)))  # any error fails the test
        return got

    with ThreadPoolExecutor(THREADS // 2 + 1) as pool:
        futures = [pool.submit(loader, t) for t in range(THREADS // 2)]
        publisher = pool.submit(_publisher(dest, versions, rounds, endpoint_url))
        try:
            publisher.result(timeout=120)
        finally:
            done.set()
        loads = [x for f in futures for x in f.result(timeout=120)]
    assert all(x in wanted for x in loads), "a load racing a publish gave a mix of two artifacts"
    return len(loads)


def test_loads_racing_local_publishes_get_one_version_whole(built, tmp_path, reliability_counts):
    n = _loads_racing_publishes(tmp_path / "live", built, None, rounds=30)
    reliability_counts["loads racing a publish checked (one version whole)"] += n


@pytest.mark.s3
def test_loads_racing_s3_publishes_get_one_version_whole(built, s3_env, reliability_counts):
    bucket = s3_env.create_bucket()
    n = _loads_racing_publishes(f"s3://{bucket}/live", built, s3_env.endpoint_url, rounds=12)
    reliability_counts["loads racing a publish checked (one version whole)"] += n
