"""The sequence-aware user encoder on tiny synthetic sequences with a known answer.

Histories are cyclic runs over N items where item i is always followed by (i + 1) % N, so after
training the best next item for a history ending in i is i + 1."""

import numpy as np
import pytest

from recvec.engine.models.sequence import (
    SequenceConfig,
    SequenceEncoder,
    SequenceModel,
    train_sequence_encoder,
    training_windows,
)
from recvec.errors import ArtifactError, RecvecError

N = 12


def cyclic_histories(n_users: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_users):
        start, length = rng.integers(0, N), rng.integers(6, 20)
        out.append(((start + np.arange(length)) % N).astype(np.int64))
    return out


def small(**kw) -> SequenceConfig:
    base = dict(dim=16, max_len=8, layers=1, heads=2, dropout=0.0, epochs=12, batch_size=16, lr=1e-2, seed=0)
    base.update(kw)
    return SequenceConfig(**base)


@pytest.fixture(scope="module", params=["sasrec", "gru"])
def trained(request) -> SequenceModel:
    return train_sequence_encoder(cyclic_histories(), N, small(arch=request.param), threads=1)


class TestTraining:
    def test_loss_decreases(self, trained):
        losses = [e["loss"] for e in trained.log]
        assert len(losses) == trained.config.epochs
        assert losses[-1] < 0.5 * losses[0]

    def test_predicts_the_next_item(self, trained):
        # histories ending in every item i (various lengths, some longer than max_len)
        hist = [((i - np.arange(length)[::-1]) % N).astype(np.int64) for i in range(N) for length in (1, 3, 11)]
        scores = trained.encoder().encode(hist) @ trained.item_vectors().T
        top1 = scores.argmax(axis=1)
        expected = np.array([(h[-1] + 1) % N for h in hist])
        assert (top1 == expected).mean() == 1.0

    def test_seeded(self):
        cfg = small(epochs=2)
        a = train_sequence_encoder(cyclic_histories(), N, cfg, threads=1)
        b = train_sequence_encoder(cyclic_histories(), N, cfg, threads=1)
        np.testing.assert_array_equal(a.item_vectors(), b.item_vectors())
        c = train_sequence_encoder(cyclic_histories(), N, small(epochs=2, seed=1), threads=1)
        assert not np.array_equal(a.item_vectors(), c.item_vectors())

    @pytest.mark.parametrize("sampling", ["uniform", "popularity"])
    def test_sampled_negatives_also_learn(self, sampling):
        m = train_sequence_encoder(cyclic_histories(), N, small(negatives=4, sampling=sampling, epochs=15), threads=1)
        hist = [np.array([i], dtype=np.int64) for i in range(N)]
        top1 = (m.encoder().encode(hist) @ m.item_vectors().T).argmax(axis=1)
        assert (top1 == (np.arange(N) + 1) % N).mean() >= 0.9

    def test_global_torch_state_is_left_alone(self):
        import torch

        threads = torch.get_num_threads()
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        train_sequence_encoder(cyclic_histories(8), N, small(epochs=1), threads=1)
        assert torch.equal(torch.rand(3), expected)
        assert torch.get_num_threads() == threads

    def test_validation_callback_is_logged(self):
        seen = []

        def validation(model):
            seen.append(model.module.training)
            return {"score": float(len(seen))}

        m = train_sequence_encoder(cyclic_histories(), N, small(epochs=3), validation=validation, threads=1)
        assert [e["score"] for e in m.log] == [1.0, 2.0, 3.0]
        assert seen == [False, False, False]  # evaluated in eval mode


class TestEncoder:
    def test_shapes_and_protocol(self, trained):
        enc = trained.encoder()
        assert isinstance(enc, SequenceEncoder) and enc.dim == trained.config.dim
        v = trained.item_vectors()
        assert v.shape == (N, trained.config.dim) and v.dtype == np.float32
        u = enc.encode(cyclic_histories(5, seed=3))
        assert u.shape == (5, trained.config.dim) and u.dtype == np.float32

    def test_batch_equals_single(self, trained):
        hist = cyclic_histories(9, seed=2) + [np.array([3], dtype=np.int64)]
        enc = SequenceEncoder(trained, batch_size=4)
        batch = enc.encode(hist)
        single = np.vstack([enc.encode([h]) for h in hist])
        np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)

    def test_empty_history_gives_zeros(self, trained):
        hist = [np.array([], dtype=np.int64), np.array([1, 2], dtype=np.int64), np.zeros(0, dtype=np.int64)]
        u = trained.encoder().encode(hist)
        assert np.all(u[0] == 0) and np.all(u[2] == 0)
        assert np.any(u[1] != 0)
        assert trained.encoder().encode([]).shape == (0, trained.config.dim)

    def test_only_the_last_max_len_items_matter(self, trained):
        L = trained.config.max_len
        tail = np.arange(L, dtype=np.int64) % N
        a = trained.encoder().encode([np.concatenate([[5, 6, 7], tail])])
        b = trained.encoder().encode([tail])
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)

    def test_timestamps_are_accepted(self, trained):
        hist = cyclic_histories(3, seed=4)
        ts = [np.arange(len(h)) for h in hist]
        np.testing.assert_array_equal(trained.encoder().encode(hist, ts), trained.encoder().encode(hist))

    def test_out_of_range_rows_raise(self, trained):
        with pytest.raises(RecvecError, match=f"item row {N} outside"):
            trained.encoder().encode([np.array([0, N])])
        with pytest.raises(RecvecError, match="item row -1"):
            trained.encoder().encode([np.array([-1])])


class TestSaveLoad:
    def test_safetensors_round_trip(self, trained, tmp_path):
        from safetensors.numpy import load_file, save_file

        arrays = trained.state_dict_arrays()
        assert all(isinstance(a, np.ndarray) for a in arrays.values())
        path = tmp_path / "sequence.safetensors"
        save_file(arrays, str(path))
        loaded = SequenceModel.from_arrays(SequenceConfig.from_dict(trained.config.to_dict()), load_file(str(path)))
        assert loaded.num_items == N
        np.testing.assert_array_equal(loaded.item_vectors(), trained.item_vectors())
        hist = cyclic_histories(7, seed=5)
        np.testing.assert_array_equal(loaded.encoder().encode(hist), trained.encoder().encode(hist))

    def test_mismatched_arrays_raise(self, trained):
        arrays = trained.state_dict_arrays()
        with pytest.raises(ArtifactError, match="shape"):
            SequenceModel.from_arrays(SequenceConfig.from_dict({**trained.config.to_dict(), "dim": 8, "heads": 2}),
                                      arrays)
        with pytest.raises(ArtifactError, match="missing"):
            SequenceModel.from_arrays(trained.config, {k: v for k, v in list(arrays.items())[:-1]})
        with pytest.raises(ArtifactError, match="item_emb"):
            SequenceModel.from_arrays(trained.config, {})


class TestConfig:
    @pytest.mark.parametrize(
        "kw, match",
        [
            ({"arch": "lstm"}, "arch"),
            ({"dim": 0}, "dim"),
            ({"dim": 10, "heads": 3}, "divisible"),
            ({"max_len": -1}, "max_len"),
            ({"epochs": 0}, "epochs"),
            ({"batch_size": 2.5}, "batch_size"),
            ({"dropout": 1.0}, "dropout"),
            ({"lr": 0.0}, "lr"),
            ({"negatives": -1}, "negatives"),
            ({"sampling": "hard"}, "sampling"),
            ({"weight_decay": -0.1}, "weight_decay"),
        ],
    )
    def test_invalid_values_raise(self, kw, match):
        with pytest.raises(RecvecError, match=match):
            SequenceConfig(**kw)

    def test_unknown_keys_and_round_trip(self):
        c = SequenceConfig(dim=32, arch="gru")
        assert SequenceConfig.from_dict(c.to_dict()) == c
        with pytest.raises(RecvecError, match="unknown sequence config keys: width"):
            SequenceConfig.from_dict({"width": 3})

    def test_training_input_errors(self):
        with pytest.raises(RecvecError, match="nothing to train"):
            train_sequence_encoder([np.array([1]), np.array([], dtype=np.int64)], N, small(), threads=1)
        with pytest.raises(RecvecError, match="outside"):
            train_sequence_encoder([np.array([1, N + 3])], N, small(), threads=1)
        with pytest.raises(RecvecError, match="threads"):
            train_sequence_encoder(cyclic_histories(), N, small(), threads=0)


def test_training_windows_cover_every_transition_once():
    h = np.arange(23, dtype=np.int64)
    w = training_windows([h, np.array([4], dtype=np.int64)], max_len=5)
    inp, tgt = w[:, :-1], w[:, 1:]
    pairs = sorted((int(a) - 1, int(b) - 1) for a, b in zip(inp.ravel(), tgt.ravel()) if a > 0 and b > 0)
    assert pairs == [(i, i + 1) for i in range(22)]
    assert w[0, -1] == 23  # the most recent window ends at the last item (row 22 -> 23)
    assert np.all((w[:, :-1] == 0) | (w[:, 1:] > 0))  # padding only on the left
