"""Layout benchmark (``recvec bench layouts``): one MovieLens dataset read in its own format and the
same rows written as other layouts -- Parquet and CSV with other column names, string ids and
timestamp types -- must give identical splits and identical Recall@K / NDCG@K (same seed).

Layouts written (into a temporary directory, removed afterwards):

- ``parquet``: columns visitor / sku / stars / ts, user ids ``u`` + the id zero-padded to 6 digits
  (string order = integer order), item ids ASIN-like random strings (``B0`` + 8 characters; their
  order is unrelated to the integer ids), ts a UTC timestamp column; a product table (sku, name,
  genres) as Parquet;
- ``csv``: columns user / movie / score / time, the same string ids, epoch seconds;
- ``parquet-unpadded``: as parquet but user ids ``u`` + the id unpadded ('u10' sorts before 'u2'),
  which changes the order users are met in (the split's rows are the same; ALS's random start meets
  users in another order, so its figures differ within seed noise: shown, not hidden).

Compared per layout: train/test sizes, the split's rows (users and items mapped back to the
integer ids, in order, with timestamps), the vocabularies' order, and each model's Recall@K and
NDCG@K (``popular`` and the lab's ALS by default).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from recvec.benchmarks.runner import cpus_available, load_average, threads
from recvec.engine.data import Dataset, load_dataset
from recvec.engine.data.spec import Columns, DatasetSpec, ItemColumns


def _item_labels(ids: np.ndarray, seed: int) -> dict[int, str]:
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out: dict[int, str] = {}
    taken: set[str] = set()
    for m in ids.tolist():
        while True:
            label = "B0" + "".join(alphabet[rng.integers(0, len(alphabet), 8)])
            if label not in taken:
                taken.add(label)
                out[m] = label
                break
    return out


def write_layouts(ds: Dataset, directory: Path, *, seed: int = 0) -> dict[str, DatasetSpec]:
    """Write ``ds``'s rows (file order) and catalogue in the layouts of the module docstring; returns
    layout name -> the DatasetSpec that reads it back."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    r, c = ds.ratings, ds.catalog
    labels = _item_labels(c.ids, seed)
    sku = np.array([labels[m] for m in r.items.tolist()])
    padded = np.char.add("u", np.char.zfill(r.users.astype(str), 6))
    unpadded = np.char.add("u", r.users.astype(str))
    ts = pa.array(r.timestamps, pa.timestamp("s", tz="UTC"))
    products = pa.table({"sku": [labels[m] for m in c.ids.tolist()], "name": list(c.titles), "genres": list(c.genres)})
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(products, directory / "products.parquet")
    pq.write_table(pa.table({"visitor": padded, "sku": sku, "stars": r.ratings, "ts": ts}), directory / "events.parquet")
    pq.write_table(pa.table({"visitor": unpadded, "sku": sku, "stars": r.ratings, "ts": ts}),
                   directory / "events-unpadded.parquet")
    pacsv.write_csv(pa.table({"user": padded, "movie": sku, "score": r.ratings, "time": r.timestamps}),
                    directory / "events.csv")
    items = str(directory / "products.parquet")
    icols = ItemColumns(id="sku", title="name", text=("name", "genres"))
    pcols = Columns(user="visitor", item="sku", rating="stars", time="ts")
    return {
        "parquet": DatasetSpec(str(directory / "events.parquet"), pcols, items, icols),
        "csv": DatasetSpec(str(directory / "events.csv"), Columns(user="user", item="movie", rating="score",
                                                                   time="time"), items, icols),
        "parquet-unpadded": DatasetSpec(str(directory / "events-unpadded.parquet"), pcols, items, icols),
    }


def _as_int(values: np.ndarray, back: dict) -> np.ndarray:
    return np.asarray([back[v] for v in values.tolist()], dtype=np.int64)


def _split_rows(split, user_back: dict | None, item_back: dict | None):
    """The split's train/test rows and vocabularies with ids mapped back to the original integers."""
    out = {}
    for part in ("train", "test"):
        r = getattr(split, part)
        u, i = r.user_values(), r.item_values()
        out[part] = (u if user_back is None else _as_int(u, user_back),
                     i if item_back is None else _as_int(i, item_back), r.timestamps)
    out["users"] = split.users.ids if user_back is None else _as_int(split.users.ids, user_back)
    out["items"] = split.items.ids if item_back is None else _as_int(split.items.ids, item_back)
    return out


def _same(a: dict, b: dict) -> dict:
    same_rows = all(all(np.array_equal(x, y) for x, y in zip(a[p], b[p])) for p in ("train", "test"))
    same_sets = all(set(zip(*[x.tolist() for x in a[p][:2]])) == set(zip(*[x.tolist() for x in b[p][:2]]))
                    for p in ("train", "test"))
    return {"rows_identical": bool(same_rows), "row_sets_identical": bool(same_sets),
            "user_order_identical": bool(np.array_equal(a["users"], b["users"])),
            "item_order_identical": bool(np.array_equal(a["items"], b["items"]))}


def benchmark_layouts(data: str, *, models: tuple[str, ...] = ("popular", "als"), k: int = 10, seed: int = 0,
                      threshold: float = 4.0, tmp: str | None = None, progress=None) -> dict:
    """Read ``data`` (a MovieLens dataset) in its own format and in each layout, split, fit and
    evaluate ``models`` (ALS seeded with ``seed``) on each. Returns one row per (layout, model):
    load seconds, train/test rows, whether the split's rows, user order and item order equal the
    original's, Recall@k, NDCG@k, users, and whether they equal the original's exactly."""
    import warnings

    from recvec.engine.models.als import ALSConfig
    from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model
    from recvec.engine.split import leave_last_out

    say = progress or (lambda msg: None)
    load_before = load_average()
    t0 = time.perf_counter()
    original = load_dataset(data)
    layouts: dict[str, tuple[Dataset, float]] = {"movielens": (original, time.perf_counter() - t0)}
    root = Path(tempfile.mkdtemp(prefix="recvec-bench-layouts-", dir=tmp))
    rows = []
    try:
        specs = write_layouts(original, root, seed=seed)
        for name, spec in specs.items():
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                layouts[name] = (load_dataset(spec), time.perf_counter() - t0)
            say(f"read {name} ({layouts[name][1]:.2f} s)")
        user_back = {f"u{u:06d}": u for u in np.unique(original.ratings.users).tolist()}
        user_back_unpadded = {f"u{u}": u for u in user_back.values()}
        item_back = {v: m for m, v in _item_labels(original.catalog.ids, seed).items()}
        reference: dict = {}
        ref_split = None
        for name, (ds, load_s) in layouts.items():
            split = leave_last_out(ds.ratings, threshold)
            if name == "movielens":
                ref_split = _split_rows(split, None, None)
                same = {"rows_identical": True, "row_sets_identical": True, "user_order_identical": True,
                        "item_order_identical": True}
            else:
                ub = user_back_unpadded if name == "parquet-unpadded" else user_back
                same = _same(ref_split, _split_rows(split, ub, item_back))
            for kind in models:
                cfg = ModelConfig(kind=kind, als=ALSConfig(seed=seed))
                ev = evaluate_model(fit_model(split, ds.catalog, cfg), split, k=k)
                if name == "movielens":
                    reference[kind] = (ev.recall, ev.ndcg)
                rows.append({"layout": name, "format": ds.format, "source": Path(str(ds.source)).name,
                             "string_ids": ds.ratings.user_labels is not None, "load_s": load_s, "model": cfg.name,
                             "train_rows": len(split.train), "test_rows": len(split.test), **same,
                             f"recall@{k}": ev.recall, f"ndcg@{k}": ev.ndcg, "users": ev.users,
                             "metrics_identical": (ev.recall, ev.ndcg) == reference[kind]})
                say(f"{name} {cfg.name}: Recall@{k} {ev.recall:.4f} NDCG@{k} {ev.ndcg:.4f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from recvec.threads import threads as policy_threads

    return {"data": str(data), "k": k, "seed": seed, "rows": rows, "load_average_before": load_before,
            "load_average_after": load_average(), "cpus_available": cpus_available(),
            "thread_policy": policy_threads(), "threads": threads()}
