"""`recvec bench sequence`: the validation runs that choose the sequence encoder's settings, recorded.

A one-factor-at-a-time search around a base ``SequenceConfig``: the base first, then for every
``--vary FIELD=V1,V2,...`` each value the base does not already have (everything else as the base).
Every run trains on the validation split's train histories (``split.validation_split``: each user's
second-to-last positive held out; the test split is never read), evaluates Recall@k / NDCG@k on
the validation targets after every epoch, and records the per-epoch log, the epoch and fit seconds,
the load average when it ended and its best epoch. The choice is the run and epoch with the best
validation Recall@k (ties: NDCG@k), reported as a config with ``epochs`` set to that epoch
(training is seeded with a fixed schedule, so a refit with those epochs reproduces it).

Runs are written to ``OUT/sequence_search.json`` as each finishes; a rerun with the same data and
base reuses every finished run whose config matches (``--force`` starts afresh). ``minutes`` stops
starting new runs once that much time has gone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from recvec.benchmarks.runner import load_average, machine_info
from recvec.errors import RecvecError, shown

RESULTS = "sequence_search.json"


@dataclass(frozen=True)
class SequenceSearch:
    """The base config, the values to vary (``((field, (v1, v2, ...)), ...)``), the cut-off ``k`` and
    an optional time budget in minutes. RecvecError for a field SequenceConfig lacks."""

    base: object  # a SequenceConfig
    vary: tuple = ()
    k: int = 10
    minutes: float | None = None

    def __post_init__(self):
        known = {f.name for f in fields(self.base)}
        for name, values in self.vary:
            if name not in known or name == "seed":
                raise RecvecError(f"--vary: {shown(name)} is not a sequence setting (one of "
                                  f"{', '.join(sorted(known - {'seed'}))})", params=("vary",))
            if not values:
                raise RecvecError(f"--vary {name}: no values given", params=("vary",))

    def configs(self) -> list:
        """The base, then each varied value the base does not have, in the order given."""
        out = [self.base]
        for name, values in self.vary:
            for v in values:
                c = replace(self.base, **{name: v})  # SequenceConfig checks the value
                if c not in out:
                    out.append(c)
        return out


def parse_vary(texts, base, flag: str = "--vary") -> tuple:
    """``("layers=1,2,3", "tied=false")`` -> ``(("layers", (1, 2, 3)), ("tied", (False,)))``, each value
    read as the type of the base's field. RecvecError naming ``flag`` and the value."""
    types = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    out = []
    for text in texts:
        name, sep, rest = str(text).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in types:
            raise RecvecError(f"{flag}: expected FIELD=V1,V2 with FIELD one of {', '.join(sorted(types))}, got "
                              f"{shown(text)}", params=(flag.lstrip("-"),))
        out.append((name, tuple(_value(types[name], v.strip(), name, flag) for v in rest.split(",") if v.strip())))
    return tuple(out)


def _value(kind: type, text: str, name: str, flag: str):
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        return kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        what = {int: "an integer", float: "a number", bool: "true or false"}.get(kind, kind.__name__)
        raise RecvecError(f"{flag} {name}: {shown(text)} is not {what}", params=(flag.lstrip("-"),)) from None


def run_search(split, search: SequenceSearch, out: str | Path, *, data: str, fingerprint: str, force: bool = False,
               progress: bool = False, threads: int | None = None, say=None, context=None) -> dict:
    """Train every config of ``search`` on ``validation_split(split)`` and record it (module doc);
    returns the report: {"data", "protocol", "runs", "chosen", "machine", ...}."""
    from recvec.engine.models.fit import ModelConfig, assemble_sequence, evaluate_model
    from recvec.engine.models.sequence import train_sequence_encoder
    from recvec.engine.split import validation_split

    say = say or (lambda m: None)
    path = Path(out) / RESULTS
    Path(out).mkdir(parents=True, exist_ok=True)
    head = {"data": data, "fingerprint": fingerprint, "k": search.k, "base": search.base.to_dict()}
    done = _finished(path, head)  # also refuses a file recvec did not write
    if force:
        done = {}
    val = validation_split(split)
    runs, t_start = [], time.perf_counter()
    for cfg in search.configs():
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key in done:
            runs.append(done[key])
            say(f"reused: {_diff(cfg, search.base)}")
            continue
        if search.minutes is not None and time.perf_counter() - t_start > 60 * search.minutes:
            say(f"budget of {search.minutes:g} minutes spent: not run: {_diff(cfg, search.base)}")
            continue
        say(f"training: {_diff(cfg, search.base)}")

        def on_epoch(model, cfg=cfg) -> dict:
            mc = ModelConfig(kind="sequence", sequence=cfg)
            ev = evaluate_model(assemble_sequence(val, mc, model), val, k=search.k)
            return {"val_recall": ev.recall, "val_ndcg": ev.ndcg}

        t0 = time.perf_counter()
        model = train_sequence_encoder(val.histories(), len(val.items), cfg, progress=progress,
                                       validation=on_epoch, threads=threads)
        runs.append(_run_record(cfg, search.base, model.log, time.perf_counter() - t0))
        _write(path, {**head, "runs": runs, "machine": machine_info(context)})
    chosen = max(runs, key=lambda r: (r["best"]["val_recall"], r["best"]["val_ndcg"]))
    report = {**head, "protocol": "validation split only (each user's second-to-last positive held out); the "
                                  "test split is never read",
              "users": int(len(val.test)), "runs": runs,
              "chosen": {"changed": chosen["changed"], "epoch": chosen["best"]["epoch"],
                         "val_recall": chosen["best"]["val_recall"], "val_ndcg": chosen["best"]["val_ndcg"],
                         "config": {**chosen["config"], "epochs": chosen["best"]["epoch"]}},
              "machine": machine_info(context)}
    _write(path, report)
    return report


def _run_record(cfg, base, log: list[dict], seconds: float) -> dict:
    epochs = [e for e in log if "epoch" in e]
    best = max(epochs, key=lambda e: (e["val_recall"], e["val_ndcg"]))
    return {"changed": _diff(cfg, base), "config": cfg.to_dict(), "fit_s": seconds, "load_average": load_average(),
            "epoch_s": sum(e["seconds"] for e in epochs) / len(epochs), "epochs_run": len(epochs),
            "best": {"epoch": best["epoch"], "val_recall": best["val_recall"], "val_ndcg": best["val_ndcg"]},
            "log": epochs}


def _diff(cfg, base) -> str:
    """What ``cfg`` changes from ``base`` ("base" when nothing)."""
    changed = [f"{f.name}={getattr(cfg, f.name)}" for f in fields(cfg) if getattr(cfg, f.name) != getattr(base, f.name)]
    return ", ".join(changed) or "base"


def _finished(path: Path, head: dict) -> dict:
    """Runs already recorded at ``path`` for the same data, base and k, by config (else {})."""
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict) or not {"base", "runs"} <= set(old):
        raise RecvecError(f"{path} exists and is not a sequence search recvec wrote: move it or choose another "
                          "--out", params=("out",))
    if any(old.get(k) != v for k, v in head.items()):
        return {}
    return {json.dumps(r["config"], sort_keys=True): r for r in old.get("runs", []) if isinstance(r, dict)}


def _write(path: Path, record: dict) -> None:
    """The record as JSON at ``path``, replaced whole (a crash leaves the previous record, never half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
