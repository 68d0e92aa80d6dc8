"""Security: no unsafe deserialisation anywhere in the package, and no path from a manifest or an S3
key can lead outside the artifact / target directory.

- The package source (every .py under recvec/) is parsed and fails on: importing pickle, cPickle,
  _pickle, dill, cloudpickle, joblib, shelve, marshal or jsonpickle; ``np.load`` without
  ``allow_pickle=False``; ``torch.load`` without ``weights_only=True``; ``read_pickle``;
  ``yaml.load``/``unsafe_load``; the builtins ``eval``/``exec`` (and ``__import__`` of a computed
  name); ``allow_pickle=True``, ``weights_only=False`` or ``trust_remote_code=True`` anywhere. The
  checker is itself tested on bad and good snippets.
- Artifacts are untrusted input (they may come from S3): manifests naming files with ``..``,
  absolute, nested, home-relative, drive or backslash paths, a NUL byte or non-ASCII look-alikes --
  in files, index_file, item_ids_file, catalog_file or an array's file -- are refused by name, even
  when the file they point at exists with the right checksum; locally and on S3. A file that is a
  symbolic link out of the artifact directory is refused too.
- S3 keys that would escape the target directory of a download are refused before anything is
  written.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from recvec.engine import storage
from recvec.errors import ArtifactError
from recvec.indexes.artifact import load_artifact, save_artifact
from recvec.indexes.backends.faiss_build import build_index
from recvec.indexes.spec import IndexSpec

PACKAGE = Path(__file__).resolve().parents[1] / "recvec"

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


# ------------------------------------------------------------------------------ the source checker


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def unsafe_uses(source: str, filename: str = "<src>") -> list[str]:
    """'file:line: what' for every unsafe deserialisation construct in the source."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)

        def bad(what: str) -> None:
            found.append(f"{filename}:{line}: {what}")

        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in UNSAFE_MODULES:
                    bad(f"import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                bad(f"from {node.module} import ...")
            for a in node.names:
                if a.name in UNSAFE_MODULES or a.name in ("read_pickle", "unsafe_load"):
                    bad(f"from {node.module} import {a.name}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("np.load", "numpy.load") and not _is_const(_kw(node, "allow_pickle"), False):
                bad(f"{name} without allow_pickle=False")
            if name == "torch.load" and not _is_const(_kw(node, "weights_only"), True):
                bad("torch.load without weights_only=True")
            if last in ("read_pickle", "unsafe_load", "full_load") or name in ("yaml.load", "yaml.load_all"):
                bad(name)
            if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                bad(f"builtin {node.func.id}()")
            if isinstance(node.func, ast.Name) and node.func.id == "__import__" \
                    and not (node.args and isinstance(node.args[0], ast.Constant)):
                bad("__import__ of a computed name")
            for k, v in (("allow_pickle", True), ("weights_only", False), ("trust_remote_code", True)):
                if _is_const(_kw(node, k), v):
                    bad(f"{k}={v}")
            if any(k.arg is None for k in node.keywords) and name in ("np.load", "numpy.load", "torch.load"):
                bad(f"{name} with **kwargs (cannot check)")
    return found


@pytest.mark.parametrize("snippet", [
    "import pickle", "import _pickle as p", "from pickle import loads", "import joblib", "import dill",
    "import shelve", "import marshal", "from cloudpickle import load", "import jsonpickle",
    "import numpy as np\nnp.load(f)", "import numpy\nnumpy.load(f, allow_pickle=True)",
    "np.load(f, allow_pickle=flag)", "np.load(f, **kw)",
    "torch.load(f)", "torch.load(f, weights_only=False)", "torch.load(f, map_location='cpu')",
    "pd.read_pickle(p)", "from pandas import read_pickle", "yaml.load(s)", "yaml.unsafe_load(s)",
    "eval(open(p).read())", "exec(text)", "__import__(name)", "AutoModel.from_pretrained(p, trust_remote_code=True)",
])
def test_checker_flags_unsafe_snippets(snippet):
    assert unsafe_uses(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "np.load(f, allow_pickle=False)", "numpy.load(io.BytesIO(b), allow_pickle=False)",
    "torch.load(f, weights_only=True, map_location='cpu')", "module.eval()", "model.to(d).eval()",
    "json.loads(s)", "faiss.read_index(p)", "safetensors.numpy.load(b)", "x = 'pickle'",
    "__import__('numpy').__version__",
])
def test_checker_passes_safe_snippets(snippet):
    assert unsafe_uses(snippet) == []


def test_package_has_no_unsafe_deserialisation(reliability_counts):
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the whole package, not an empty glob
    found = [hit for f in files
             for hit in unsafe_uses(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE.parent)))]
    assert found == [], "unsafe deserialisation in the package:\n" + "\n".join(found)
    reliability_counts["security: source files checked for unsafe deserialisation"] += len(files)


# ------------------------------------------------------------------------------ manifests naming escaping paths

N, D = 120, 8

ESCAPING = ["../secret.npy", "../../secret.npy", "/tmp/secret.npy", "sub/secret.npy", "./secret.npy",
            "a/../secret.npy", "~/secret.npy", "C:secret.npy", "C:\\secret.npy", "..\\secret.npy",
            "secret.npy/", "..", ".", "", "secret.npy\x00.txt", "\u2024\u2024/secret.npy", "%2e%2e%2fsecret.npy",
            ".secret.npy"]


def _parts(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((N, D)).astype(np.float32)
    return dict(index=build_index(v, IndexSpec.parse("flat")), item_ids=np.arange(N, dtype=np.int64) + 1,
                arrays={"item_vectors": v, "gram": (v.T @ v).astype(np.float32)},
                catalog={"titles": [f"t{i}" for i in range(N)]},
                manifest={"model": {"kind": "als", "params": {}}})


def _point_at(m: dict, field: str, name: str, data: bytes) -> None:
    """Make manifest field `field` name `name`, with the checksum of `data` (so only the name check
    can refuse it)."""
    old = {"gram": m["arrays"]["gram"]["file"], "index_file": m["index_file"],
           "item_ids_file": m["item_ids_file"], "catalog_file": m["catalog_file"]}[field]
    m["files"].pop(old)
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if field == "gram":
        m["arrays"]["gram"]["file"] = name
    else:
        m[field] = name


FIELDS = ["gram", "index_file", "item_ids_file", "catalog_file"]


@pytest.mark.parametrize("field", FIELDS)
def test_manifest_paths_escaping_the_artifact_are_refused(tmp_path, field, reliability_counts):
    dest = tmp_path / "models" / "art"
    save_artifact(dest, **_parts())
    original = (dest / "manifest.json").read_text()
    # a "secret" outside the artifact, with a valid checksum: only the name check stands in the way
    secret = (dest / {"gram": "gram.npy", "index_file": "index.faiss", "item_ids_file": "item_ids.npy",
                      "catalog_file": "catalog.json.gz"}[field]).read_bytes()
    (tmp_path / "models" / "secret.npy").write_bytes(secret)
    (tmp_path / "secret.npy").write_bytes(secret)
    for name in ESCAPING:
        m = json.loads(original)
        _point_at(m, field, name, secret)
        (dest / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(ArtifactError, match="not a plain file name"):
            load_artifact(dest)
        reliability_counts["security: escaping manifest paths refused"] += 1


@pytest.mark.s3
def test_manifest_paths_escaping_an_s3_artifact_are_refused(s3_env, reliability_counts):
    ep = s3_env.endpoint_url
    bucket = s3_env.create_bucket()
    c = s3_env.client()
    save_artifact(f"s3://{bucket}/models/art", **_parts(), endpoint_url=ep)
    original = c.get_object(Bucket=bucket, Key="models/art/manifest.json")["Body"].read()
    secret = c.get_object(Bucket=bucket, Key="models/art/gram.npy")["Body"].read()
    c.put_object(Bucket=bucket, Key="models/secret.npy", Body=secret)  # what "../secret.npy" would reach
    for field in FIELDS:
        for name in ESCAPING:
            m = json.loads(original)
            _point_at(m, field, name, secret)
            c.put_object(Bucket=bucket, Key="models/art/manifest.json", Body=json.dumps(m).encode())
            with pytest.raises(ArtifactError, match="not a plain file name"):
                load_artifact(f"s3://{bucket}/models/art", endpoint_url=ep)
            reliability_counts["security: escaping manifest paths refused"] += 1


def test_symlink_out_of_the_artifact_is_refused(tmp_path):
    dest = tmp_path / "art"
    save_artifact(dest, **_parts())
    outside = tmp_path / "outside.npy"
    outside.write_bytes((dest / "gram.npy").read_bytes())  # same bytes: the checksum alone would pass
    (dest / "gram.npy").unlink()
    (dest / "gram.npy").symlink_to(outside)
    with pytest.raises(ArtifactError, match="symbolic link .* outside the artifact directory"):
        load_artifact(dest)
    # a link that stays inside the artifact directory is harmless
    (dest / "gram.npy").unlink()
    outside.rename(dest / "gram-data.npy")
    (dest / "gram.npy").symlink_to("gram-data.npy")
    np.testing.assert_array_equal(load_artifact(dest).arrays["gram"], _parts()["arrays"]["gram"])


def test_manifest_symlinked_from_elsewhere_is_refused(tmp_path):
    dest = tmp_path / "art"
    save_artifact(dest, **_parts())
    (dest / "manifest.json").rename(tmp_path / "m.json")
    (dest / "manifest.json").symlink_to(tmp_path / "m.json")
    with pytest.raises(ArtifactError, match="symbolic link"):
        load_artifact(dest)


# ------------------------------------------------------------------------------ S3 keys escaping a download


class _Listing:
    """A stand-in S3 client whose listing holds the given keys (real servers refuse most of these
    keys outright: SeaweedFS answers InvalidRequest to '..' segments and collapses '//')."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.meta = type("Meta", (), {"endpoint_url": "http://stub", "config": None})()
        self.fetched: list[str] = []

    def list_objects_v2(self, **kw):
        return {"Contents": [{"Key": k} for k in self.keys], "IsTruncated": False}

    def get_object(self, Bucket, Key):
        self.fetched.append(Key)
        raise AssertionError("nothing may be fetched before every key is checked")


@pytest.mark.parametrize("key", ["pfx/../evil.txt", "pfx/a/../../evil.txt", "pfx//etc/evil.txt", "pfx/a//b",
                                 "pfx/..\\evil.txt", "pfx/C:/evil.txt", "pfx/~/evil.txt", "pfx/a/../../../evil"])
def test_s3_keys_escaping_a_download_are_refused(tmp_path, key, reliability_counts):
    client = _Listing(["pfx/ok.txt", key])
    target = tmp_path / "target" / "dir"
    with pytest.raises(storage.StorageError, match="escape"):
        storage.download_dir("s3://bucket/pfx", target, client=client)
    assert client.fetched == [] and not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []
    reliability_counts["security: escaping S3 keys refused"] += 1
