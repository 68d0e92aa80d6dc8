"""Named model presets shipped with the package (``recvec/presets/*.json``).

A preset names a full model configuration (kind, ALS parameters, recency weightings, hybrid weight,
sequence config), the index to build, and the figures it measured (with the command that
reproduces them)::

    {"name": "best", "description": "...", "model": {ModelConfig.to_dict()}, "index": "hnsw32",
     "measured": {"data": "...", "recall@10": ..., "ndcg@10": ..., "recall@20": ..., "command": "..."}}

``load_preset`` takes a packaged name or the path of a JSON file: a preset, or the output of
``recvec tune --out FILE`` (its chosen configuration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from recvec.engine.models.fit import ModelConfig
from recvec.errors import RecvecError, shown
from recvec.indexes.spec import IndexSpec

PACKAGE = "recvec"
FOLDER = "presets"


@dataclass(frozen=True)
class Preset:
    """A named model configuration: its ModelConfig, the index spec to build, a description, the figures
    it measured (``measured``) and where it was read from (``source``)."""

    name: str
    model: ModelConfig
    index: str = "flat"
    description: str = ""
    measured: dict = field(default_factory=dict)
    source: str = ""
    chosen_on: dict = field(default_factory=dict)  # {"data": name, "fingerprint": sha256} it was selected on

    def to_dict(self) -> dict:
        """JSON-ready, in the preset file's layout (without ``source``)."""
        return {"name": self.name, "description": self.description, "model": self.model.to_dict(),
                "index": self.index, "measured": self.measured,
                **({"chosen_on": self.chosen_on} if self.chosen_on else {})}

    def note_for(self, fingerprint: str) -> str | None:
        """What to tell a user running this preset on the data of ``fingerprint`` (a
        ``Dataset.fingerprint``) when it was chosen on other data; None when it was chosen on this data
        or records nothing."""
        chosen = self.chosen_on.get("fingerprint")
        if not chosen or chosen == fingerprint:
            return None
        return (f"preset {self.name!r} was chosen on {self.chosen_on.get('data', 'other data')}'s validation split, "
                "not on this data; `recvec tune --data ...` chooses a configuration on this data's own")


def _folder():
    return resources.files(PACKAGE) / FOLDER


def preset_names() -> list[str]:
    """Names of the packaged presets (``recvec/presets/*.json``), sorted; [] when none are installed."""
    folder = _folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def parse_preset(data: dict, source: str) -> Preset:
    """A Preset from a preset JSON object or a ``recvec tune`` result (uses its chosen config)."""
    if not isinstance(data, dict):
        raise RecvecError(f"{source}: a preset must be a JSON object")
    if "model" not in data and isinstance(data.get("chosen"), dict):  # recvec tune output
        chosen = data["chosen"]
        test = data.get("test") or {}
        data = {"name": Path(source).stem, "description": f"chosen by recvec tune ({chosen.get('model', '')})",
                "model": chosen.get("config"),
                "chosen_on": {"data": str(data.get("data", "")), "fingerprint": data.get("data_fingerprint")}
                if data.get("data_fingerprint") else {},
                "measured": {k: v for k, v in {"recall@10": test.get("recall"), "ndcg@10": test.get("ndcg"),
                                               "recall@20": test.get("recall@20")}.items() if v is not None}}
    if "model" not in data:
        raise RecvecError(f"{source}: a preset needs a 'model' object (or a tune result with 'chosen')")
    index = data.get("index", "flat")
    if not isinstance(index, str):
        raise RecvecError(f"{source}: 'index' must be an index spec string such as 'flat' or 'hnsw32'")
    try:
        IndexSpec.parse(index)  # refuse a bad spec now, naming the preset
    except RecvecError as e:
        raise RecvecError(f"{source}: {e}") from None
    measured = data.get("measured", {})
    if not isinstance(measured, dict):
        raise RecvecError(f"{source}: 'measured' must be an object")
    chosen_on = data.get("chosen_on") or {}
    if not isinstance(chosen_on, dict):
        raise RecvecError(f"{source}: 'chosen_on' must be an object (data, fingerprint)")
    return Preset(name=str(data.get("name", Path(source).stem)),
                  model=ModelConfig.from_dict(data["model"], where=f"{source} model"),
                  index=index, description=str(data.get("description", "")), measured=measured, source=source,
                  chosen_on=chosen_on)


def _read_json(text: str, source: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecvecError(f"{source}: not valid JSON (line {e.lineno}: {e.msg})") from None


def load_preset(name_or_path: str) -> Preset:
    """A packaged preset by name, or a preset / tune-result JSON file by path."""
    key = str(name_or_path).strip()
    if key in preset_names():
        res = _folder() / f"{key}.json"
        return parse_preset(_read_json(res.read_text(encoding="utf-8"), f"preset {shown(key)}"), f"preset {shown(key)}")
    path = Path(key).expanduser()
    if key.endswith(".json") or path.is_file():
        if not path.is_file():
            raise RecvecError(f"preset {shown(key)}: no such file", params=("preset",))
        return parse_preset(_read_json(path.read_text(encoding="utf-8"), str(path)), str(path))
    names = ", ".join(preset_names()) or "none installed"
    raise RecvecError(f"unknown preset {shown(key)}; choose one of {names}, or give a preset JSON file",
                      params=("preset",))


def list_presets() -> list[Preset]:
    """Every packaged preset, loaded; RecvecError if one is malformed."""
    return [load_preset(n) for n in preset_names()]


#: Model kinds a selection can refit in seconds (no text encoder, no training run).
QUICK_KINDS = ("als", "als-time", "ease", "transition")


def candidate_configs(kinds: tuple[str, ...] = QUICK_KINDS) -> tuple[ModelConfig, ...]:
    """The model configs of the packaged presets whose model is of one of ``kinds`` (by preset
    name): the candidates a selection on another dataset's validation split weighs beside its own
    search (a preset never becomes a dataset's choice unless it wins there)."""
    return tuple(p.model for p in list_presets() if p.model.kind in kinds)
