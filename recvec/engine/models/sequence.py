"""A learned sequence-aware user encoder (SASRec-style causal self-attention, or a GRU).

The model reads the last `max_len` items of a user's history (oldest first) and predicts the next
item at every position with a full softmax over the catalogue. One item embedding table is shared
by input and output, so:

- the output item embeddings are the vectors that go in the FAISS index (`item_vectors()`), and
- the hidden state at the last position is the user's query vector (`SequenceEncoder.encode`),

and the inner product of the two is exactly the training logit.

Torch is imported inside functions only (the CLI imports this module at startup).
Weights round-trip through plain numpy arrays (`state_dict_arrays` / `from_arrays`) for
safetensors; nothing is pickled.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from recvec.checks import MAX_FACTORS, MAX_ITERATIONS, check_int
from recvec.engine.models.hybrid import RemappedEncoder
from recvec.errors import ArtifactError, RecvecError, shown
from recvec.progress import progress as progress_lines
from recvec.threads import stage as thread_stage

ARCHES = ("sasrec", "gru")
SAMPLINGS = ("uniform", "popularity")


@dataclass(frozen=True)
class SequenceConfig:
    """Hyperparameters of the sequence encoder.

    The defaults were chosen on ML-1M's validation split (`validation_split`; the test split was
    read once afterwards): 2-layer SASRec, 64 dims, the last 50 items, 1024 popularity-sampled
    negatives with logQ correction, AdamW lr 3e-3, 12 epochs (about 3-5 CPU minutes).
    `negatives=0` trains with the full softmax instead (exact; its cost per step grows with the
    catalogue; its ML-1M validation run is in the README).
    `recvec bench sequence` (benchmarks/seqsearch.py) records validation runs around them, one
    setting changed at a time; its ML-1M record is in the README."""

    dim: int = 64
    max_len: int = 50
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    negatives: int = 1024  # 0: full softmax over all items; n > 0: sampled softmax with n shared negatives per batch
    sampling: str = "popularity"  # negatives drawn "uniform"ly or by train "popularity" (both logQ-corrected)
    seed: int = 0
    arch: str = "sasrec"
    tied: bool = True  # one item table for input and output; False: a separate output table (what the index holds)
    patience: int = 0  # with a validation callback: stop after this many epochs without a better recall (0: never)

    def __post_init__(self):
        if self.arch not in ARCHES:
            raise RecvecError(f"sequence arch must be one of {', '.join(ARCHES)} (got {shown(self.arch)})")
        limits = {"dim": MAX_FACTORS, "max_len": 100_000, "layers": 64, "heads": 64, "epochs": MAX_ITERATIONS,
                  "batch_size": 1_000_000}
        for name, hi in limits.items():
            check_int(f"sequence {name}", getattr(self, name), 1, hi)
        if self.sampling not in SAMPLINGS:
            raise RecvecError(f"sequence sampling must be one of {', '.join(SAMPLINGS)} (got {shown(self.sampling)})")
        if self.arch == "sasrec" and self.dim % self.heads != 0:
            raise RecvecError(f"sequence dim ({self.dim}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise RecvecError(f"sequence dropout must be in [0, 1) (got {self.dropout})")
        if not self.lr > 0:
            raise RecvecError(f"sequence lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            raise RecvecError(f"sequence weight_decay must be >= 0 (got {self.weight_decay})")
        if not isinstance(self.tied, bool):
            raise RecvecError(f"sequence tied must be true or false (got {shown(self.tied)})")
        check_int("sequence patience", self.patience, 0, MAX_ITERATIONS)
        if not isinstance(self.negatives, (int, np.integer)) or self.negatives < 0:
            raise RecvecError(f"sequence negatives must be an integer >= 0 (got {shown(self.negatives)})")

    def to_dict(self) -> dict:
        """JSON-ready: every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SequenceConfig":
        """Rebuild from :meth:`to_dict` output (missing keys take their defaults); RecvecError for unknown
        keys or out-of-range values."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise RecvecError(f"unknown sequence config keys: {', '.join(unknown)}")
        return cls(**d)


# --------------------------------------------------------------------------- torch modules


def _build_module(num_items: int, config: SequenceConfig):
    """The torch module for `config` (item row r is embedding index r + 1; index 0 is padding)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    d, L = config.dim, config.max_len

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
            self.drop = nn.Dropout(config.dropout)

        def forward(self, x, mask):
            b, n, _ = x.shape
            h = config.heads
            q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
            return x + self.drop(self.ff(self.ln2(x)))

    class Output:  # the output item table: the input table (tied) or one of its own
        def output_table(self):
            return (self.item_emb if config.tied else self.out_emb).weight[1:]

        def _init_output(self):
            if not config.tied:
                self.out_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
                nn.init.normal_(self.out_emb.weight, std=d**-0.5)
                with torch.no_grad():
                    self.out_emb.weight[0].zero_()

    class SASRec(nn.Module, Output):
        def __init__(self):
            super().__init__()
            self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
            self._init_output()
            self.pos_emb = nn.Embedding(L, d)
            self.drop = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList([Block() for _ in range(config.layers)])
            self.norm = nn.LayerNorm(d)
            nn.init.normal_(self.item_emb.weight, std=d**-0.5)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

        def forward(self, seq):  # (b, L) int64, left-padded with 0 -> (b, L, d)
            valid = seq > 0
            x = self.item_emb(seq) * (d**0.5) + self.pos_emb.weight[None, : seq.shape[1]]
            x = self.drop(x) * valid[..., None]
            n = seq.shape[1]
            causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
            # attend to earlier real items; every position also sees itself (no all-masked rows)
            mask = (causal[None] & valid[:, None, :]) | torch.eye(n, dtype=torch.bool, device=seq.device)[None]
            mask = mask[:, None]  # (b, 1, n, n), broadcast over heads
            for blk in self.blocks:
                x = blk(x, mask)
            return self.norm(x)

    class GRU(nn.Module, Output):
        def __init__(self):
            super().__init__()
            self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=0)
            self._init_output()
            self.drop = nn.Dropout(config.dropout)
            self.gru = nn.GRU(d, d, num_layers=config.layers, batch_first=True,
                              dropout=config.dropout if config.layers > 1 else 0.0)
            self.out = nn.Linear(d, d)
            nn.init.normal_(self.item_emb.weight, std=d**-0.5)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

        def forward(self, seq):
            x = self.drop(self.item_emb(seq) * (d**0.5))
            h, _ = self.gru(x)
            return self.out(self.drop(h))

    return SASRec() if config.arch == "sasrec" else GRU()


# --------------------------------------------------------------------------- data


def _check_rows(histories: Sequence[np.ndarray], num_items: int, what: str) -> list[np.ndarray]:
    out = []
    for u, h in enumerate(histories):
        a = np.asarray(h)
        if a.ndim != 1 or (len(a) and not np.issubdtype(a.dtype, np.integer)):
            raise RecvecError(f"{what} {u}: expected a 1-d array of integer item rows, got shape {a.shape} {a.dtype}")
        a = a.astype(np.int64, copy=False)
        if len(a) and (a.min() < 0 or a.max() >= num_items):
            bad = a[(a < 0) | (a >= num_items)][0]
            raise RecvecError(f"{what} {u}: item row {bad} outside [0, {num_items})")
        out.append(a)
    return out


def _left_pad(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(n, max_len) int64 of the last max_len items + 1, left-padded with 0."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for u, h in enumerate(histories):
        tail = h[-max_len:]
        if len(tail):
            out[u, max_len - len(tail):] = tail + 1
    return out


def training_windows(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(w, max_len + 1) int64 windows (item rows + 1, left-padded with 0) covering every transition once.

    Each history is cut from its end into windows of max_len + 1 items that overlap by one item, so
    window inputs are w[:, :-1] and next-item targets w[:, 1:]; the most recent window always ends at
    the history's last item. Histories with fewer than 2 items give nothing."""
    rows = []
    for h in histories:
        end = len(h)
        while end >= 2:
            start = max(0, end - max_len - 1)
            w = np.zeros(max_len + 1, dtype=np.int64)
            w[max_len + 1 - (end - start):] = h[start:end] + 1
            rows.append(w)
            end = start + 1
            if start == 0:
                break
    if not rows:
        return np.zeros((0, max_len + 1), dtype=np.int64)
    return np.stack(rows)


# --------------------------------------------------------------------------- model + encoder


@dataclass
class SequenceModel:
    """A trained sequence model: the torch module (eval mode) plus its config and training log."""

    config: SequenceConfig
    num_items: int
    module: object = field(repr=False)
    log: list[dict] = field(default_factory=list, repr=False)

    def item_vectors(self) -> np.ndarray:
        """(num_items, dim) float32: the output item embeddings (the input table's when tied), the
        vectors to index: their inner product with a query vector is the training logit."""
        w = self.module.output_table().detach().cpu().numpy()
        return np.ascontiguousarray(w, dtype=np.float32)

    def encoder(self, *, batch_size: int = 1024) -> "SequenceEncoder":
        """A SequenceEncoder over this model, running ``batch_size`` histories per forward pass."""
        return SequenceEncoder(self, batch_size=batch_size)

    def state_dict_arrays(self) -> dict[str, np.ndarray]:
        """Weights as contiguous float32 numpy arrays (for safetensors.numpy.save_file)."""
        return {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in self.module.state_dict().items()}

    def weights_array(self) -> np.ndarray:
        """The weights as safetensors bytes in a 1-d uint8 array (stored with an artifact's arrays)."""
        from safetensors.numpy import save

        return np.frombuffer(save(self.state_dict_arrays()), dtype=np.uint8).copy()

    @classmethod
    def from_weights_array(cls, config: SequenceConfig, raw: np.ndarray) -> "SequenceModel":
        """Rebuild from ``weights_array()``; ArtifactError for anything that is not such weights."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ArtifactError(f"sequence weights must be a 1-d uint8 array of safetensors bytes, got {raw.dtype} "
                                f"{raw.shape}")
        try:
            state = load(raw.tobytes())
        except (SafetensorError, ValueError) as e:
            raise ArtifactError(f"sequence weights are not valid safetensors: {e}") from None
        return cls.from_arrays(config, state)

    @classmethod
    def from_arrays(cls, config: SequenceConfig, arrays: dict[str, np.ndarray]) -> "SequenceModel":
        """Rebuild from `state_dict_arrays()` output (e.g. safetensors.numpy.load_file)."""
        import torch

        if "item_emb.weight" not in arrays or np.ndim(arrays["item_emb.weight"]) != 2:
            raise ArtifactError("sequence weights lack a 2-d 'item_emb.weight'")
        num_items = int(arrays["item_emb.weight"].shape[0]) - 1
        module = _build_module(num_items, config)
        expected = module.state_dict()
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ArtifactError(f"sequence weights do not match config {config}: missing {missing}, unexpected {extra}")
        for k, v in expected.items():
            if tuple(arrays[k].shape) != tuple(v.shape):
                raise ArtifactError(f"sequence weight {shown(k)} has shape {arrays[k].shape}, config expects {tuple(v.shape)}")
        module.load_state_dict({k: torch.from_numpy(np.array(arrays[k], dtype=np.float32)) for k in expected})
        module.eval()
        return cls(config=config, num_items=num_items, module=module)


class SequenceEncoder:
    """UserEncoder: the hidden state after the last of a history's last max_len items.

    Timestamps are accepted for the protocol and ignored (order is what the model reads)."""

    def __init__(self, model: SequenceModel, *, batch_size: int = 1024, weights: str = "sequence_weights"):
        self.model = model
        self.dim = model.config.dim
        self.batch_size = int(batch_size)
        self.weights = weights

    def params(self) -> dict:
        """{"kind": "sequence", "config", "weights": the artifact array holding the safetensors bytes}."""
        return {"kind": "sequence", "config": self.model.config.to_dict(), "weights": self.weights}

    def item_vectors(self) -> np.ndarray:
        """(num_items, dim) float32: the model's item embeddings (see SequenceModel.item_vectors)."""
        return self.model.item_vectors()

    @classmethod
    def from_params(cls, params: dict, arrays: dict, vectors, n_items: int, decode):
        """The encoder over an artifact's index rows: the model from its weights array; with a ``rows``
        array (the model knows fewer items than the index) wrapped to map index rows to its rows."""
        def array(name: str) -> np.ndarray:
            if name not in arrays:
                raise ArtifactError(f"artifact lacks the array {shown(name)} its sequence user encoder needs; rebuild it")
            return arrays[name]

        rows = array(params["rows"]) if params.get("rows") else None
        if rows is not None and rows.shape != (n_items,):
            raise ArtifactError(f"{params['rows']} has shape {rows.shape}, expected ({n_items},)")
        n_model = n_items if rows is None else int(rows.max(initial=-1)) + 1
        weights = str(params.get("weights", "sequence_weights"))
        try:
            config = SequenceConfig.from_dict(params["config"])
        except RecvecError as e:
            raise ArtifactError(f"manifest.json user_encoder config: {e}") from None
        model = SequenceModel.from_weights_array(config, array(weights))
        if model.num_items != n_model:
            raise ArtifactError(f"sequence weights cover {model.num_items} items but the index expects {n_model}")
        enc = cls(model, weights=weights)
        return enc if rows is None else RemappedEncoder(enc, rows, array=params["rows"])

    def encode(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """The model's hidden state after each history's last ``max_len`` items; timestamps ignored, empty
        histories give zero rows. RecvecError for a row outside the model's items."""
        import torch

        hist = _check_rows(histories, self.model.num_items, "history")
        out = np.zeros((len(hist), self.dim), dtype=np.float32)
        nonempty = np.flatnonzero([len(h) > 0 for h in hist])
        module = self.model.module
        module.eval()
        with torch.inference_mode():
            for s in range(0, len(nonempty), self.batch_size):
                idx = nonempty[s : s + self.batch_size]
                seq = torch.from_numpy(_left_pad([hist[i] for i in idx], self.model.config.max_len))
                out[idx] = module(seq)[:, -1].numpy()
        return out


# --------------------------------------------------------------------------- training


def train_sequence_encoder(
    histories: Sequence[np.ndarray],
    num_items: int,
    config: SequenceConfig = SequenceConfig(),
    *,
    progress: bool = False,
    validation: Callable[[SequenceModel], dict] | None = None,
    threads: int | None = None,
) -> SequenceModel:
    """Train on users' train histories (item rows, oldest first) to predict each next item.

    `validation(model) -> dict of floats` is called after every epoch (model in eval mode) and its
    result is shown and recorded in `model.log`; use it with `validation_split` only.
    `threads` defaults to the CPUs this process may use; torch's thread count is restored afterwards.
    """
    import torch

    if num_items <= 0:
        raise RecvecError(f"num_items must be positive (got {num_items})")
    hist = _check_rows(histories, num_items, "history")
    windows = training_windows(hist, config.max_len)
    if len(windows) == 0:
        raise RecvecError("no history has 2 or more items: nothing to train the sequence encoder on")

    with thread_stage("train", threads), torch.random.fork_rng(devices=[]):  # seeded, caller's RNG untouched
        return _fit(windows, num_items, config, progress, validation)


def _fit(windows: np.ndarray, num_items: int, config: SequenceConfig, progress: bool, validation) -> SequenceModel:
    import torch
    from torch.nn import functional as F

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    module = _build_module(num_items, config)
    opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model = SequenceModel(config=config, num_items=num_items, module=module)
    win = torch.from_numpy(windows)
    sampled = 0 < config.negatives < num_items
    if sampled:  # sampled softmax: candidate logits minus log(expected count) (Jean et al. 2015)
        if config.sampling == "popularity":
            q = np.bincount(windows[:, 1:].ravel(), minlength=num_items + 1)[1:].astype(np.float64) + 1.0
        else:
            q = np.ones(num_items)
        q /= q.sum()
        log_q = torch.from_numpy(np.log(q * config.negatives).astype(np.float32))
    steps = (len(windows) + config.batch_size - 1) // config.batch_size
    best = None  # (validation recall, epoch, weights) for early stopping
    for epoch in range(config.epochs):
        module.train()
        order = torch.from_numpy(rng.permutation(len(windows)))
        total, count, t0 = 0.0, 0, time.perf_counter()
        bar = progress_lines(steps, f"sequence epoch {epoch + 1}/{config.epochs}", "step", enabled=progress)
        for step in range(steps):
            batch = win[order[step * config.batch_size : (step + 1) * config.batch_size]]
            inp, tgt = batch[:, :-1], batch[:, 1:]
            keep = tgt > 0
            h = module(inp)[keep]  # (positions, d)
            y = tgt[keep] - 1
            emb = module.output_table()
            if sampled:
                neg = torch.from_numpy(rng.choice(num_items, config.negatives, p=q))
                pos_logit = (h * emb[y]).sum(-1, keepdim=True) - log_q[y][:, None]
                neg_logit = h @ emb[neg].T - log_q[neg][None, :]
                neg_logit = neg_logit.masked_fill(neg[None, :] == y[:, None], float("-inf"))
                loss = F.cross_entropy(torch.cat([pos_logit, neg_logit], 1),
                                       torch.zeros(len(y), dtype=torch.long))
            else:
                loss = F.cross_entropy(h @ emb.T, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
            bar.update(1)
        bar.close()
        module.eval()
        entry = {"epoch": epoch + 1, "loss": total / count, "seconds": time.perf_counter() - t0}
        if validation is not None:
            entry.update(validation(model))
        model.log.append(entry)
        if progress:
            shown = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items())
            print(f"sequence {shown}", file=sys.stderr, flush=True)
        if config.patience and validation is not None:
            score = float(entry.get("val_recall", entry.get("recall", float("nan"))))
            if best is None or score > best[0]:
                best = (score, epoch + 1, {k: v.detach().clone() for k, v in module.state_dict().items()})
            elif epoch + 1 - best[1] >= config.patience:
                break
    if best is not None and best[1] != len(model.log):  # early stopped: the best epoch's weights
        module.load_state_dict(best[2])
        model.log.append({"restored_epoch": best[1], "val_recall": best[0]})
    module.eval()
    return model
