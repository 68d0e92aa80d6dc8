"""The user-encoder contract (tests/contracts.py) over every encoder kind an artifact can hold:
the ALS fold-in (plain and recency-weighted), the content mean, the popularity constant, the
sequence encoder, and the hybrids (ALS + text; ALS + a sequence model that knows fewer items
than the index, through its row map). Small seeded data; the sequence model trains for one epoch."""

from __future__ import annotations

import numpy as np
import pytest

from contracts import UserEncoderContract
from recvec.engine.models.hybrid import HybridEncoder, Part, RemappedEncoder
from recvec.engine.models.sequence import SequenceConfig, train_sequence_encoder
from recvec.engine.users import ALSFoldIn, ConstantEncoder, MeanEncoder
from recvec.engine.weighting import RecencyWeighting

N_ITEMS, D = 60, 8


def _vectors(seed: int, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N_ITEMS, d)).astype(np.float32)


@pytest.fixture(scope="module")
def sequence_model():
    rng = np.random.default_rng(3)
    histories = [rng.choice(N_ITEMS - 10, size=12, replace=False) for _ in range(40)]  # items 50-59 unseen
    return train_sequence_encoder(histories, N_ITEMS - 10,
                                  SequenceConfig(dim=8, max_len=10, layers=1, heads=1, epochs=1, negatives=0))


def _encoders(sequence_model) -> dict:
    als, content = _vectors(1), _vectors(2, 6)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    rows = np.full(N_ITEMS, -1, np.int64)
    rows[: N_ITEMS - 10] = np.arange(N_ITEMS - 10)
    seq = sequence_model.encoder()
    remapped = RemappedEncoder(seq, rows, array="sequence_rows")
    arrays = {"als_factors": als, "content_vectors": content, "sequence_rows": rows,
              "sequence_weights": sequence_model.weights_array()}
    return {
        "als_fold_in": (ALSFoldIn(als, 0.1, 1.0), arrays, als),
        "als_fold_in+recency": (ALSFoldIn(als, 0.05, 2.0, RecencyWeighting(half_life=3.0, half_life_days=30.0)),
                                arrays, als),
        "mean+recency": (MeanEncoder(content, RecencyWeighting(half_life=2.0)), arrays, content),
        "constant": (ConstantEncoder(), arrays, np.ones((N_ITEMS, 1), np.float32)),
        "sequence": (seq, {"sequence_weights": arrays["sequence_weights"]}, sequence_model.item_vectors()),
        "hybrid als+text": (HybridEncoder(Part("als", ALSFoldIn(als, 0.1, 1.0, RecencyWeighting(half_life=2.0)), als,
                                               "als_factors"),
                                          Part("text", MeanEncoder(content), content, "content_vectors"), 0.7),
                            arrays, None),
        "hybrid als+sequence (row map)": (HybridEncoder(Part("als", ALSFoldIn(als, 0.1, 1.0), als, "als_factors"),
                                                        Part("sequence", remapped, remapped.item_vectors()), 0.2),
                                          arrays, None),
    }


KINDS = ["als_fold_in", "als_fold_in+recency", "mean+recency", "constant", "sequence", "hybrid als+text",
         "hybrid als+sequence (row map)"]


class TestUserEncoderContract(UserEncoderContract):
    @pytest.fixture(params=KINDS)
    def user_encoder(self, request, sequence_model):
        enc, arrays, vectors = _encoders(sequence_model)[request.param]
        n_items = N_ITEMS if request.param != "sequence" else N_ITEMS - 10
        return enc, arrays, vectors, n_items


def test_params_are_what_manifests_have_always_held(sequence_model):
    """The manifest format did not change when the encoders took over writing it."""
    enc = _encoders(sequence_model)
    assert enc["als_fold_in"][0].params() == {"kind": "als_fold_in", "regularization": 0.1, "alpha": 1.0}
    assert enc["mean+recency"][0].params() == {"kind": "mean", "weighting": RecencyWeighting(half_life=2.0).to_dict()}
    assert enc["constant"][0].params() == {"kind": "constant"}
    hybrid = enc["hybrid als+sequence (row map)"][0].params()
    assert hybrid["kind"] == "hybrid" and hybrid["build_weight"] == 0.2
    assert hybrid["parts"][0] == {"name": "als", "array": "als_factors", "kind": "als_fold_in",
                                  "regularization": 0.1, "alpha": 1.0}
    assert hybrid["parts"][1] == {"name": "sequence", "kind": "sequence", "config": sequence_model.config.to_dict(),
                                  "weights": "sequence_weights", "rows": "sequence_rows"}


def test_a_hybrid_weight_applies_to_hybrids_only(sequence_model):
    from recvec.engine.users import encoder_from_params
    from recvec.errors import RecvecError

    enc, arrays, vectors = _encoders(sequence_model)["als_fold_in"]
    with pytest.raises(RecvecError, match="hybrid weight applies to hybrid indexes only") as e:
        encoder_from_params(enc.params(), arrays, vectors, n_items=N_ITEMS, hybrid_weight=0.5)
    assert e.value.params == ("hybrid_weight",)
    hybrid, arrays, _ = _encoders(sequence_model)["hybrid als+text"]
    again = encoder_from_params(hybrid.params(), arrays, None, n_items=N_ITEMS, hybrid_weight=0.4)
    assert again.weight == 0.4 and again.build_weight == 0.7
