"""FID, KID and PRDC against straightforward SciPy / scikit-learn reference computations on random features."""

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.metrics import pairwise_distances
from sklearn.metrics.pairwise import polynomial_kernel

from visrep.evaluation.conditional_metrics import gan_test, per_class_kid
from visrep.evaluation.distribution_metrics import fid, kid, prdc
from visrep.evaluation.embedding_consistency import embedding_consistency, real_pair_partners
from visrep.evaluation.memorisation import compare_distances, nearest_distances


def _features(seed, n=300, dim=16, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)  # correlated features, like a network's
    return (rng.normal(size=(n, dim)) @ mixing) * scale + shift


def _same_mixing(seed, n=300, dim=8, shift=0.0):
    """Samples of one fixed correlated distribution (the mixing matrix does not depend on ``seed``)."""
    mixing = np.random.default_rng(12345).normal(size=(dim, dim)) / np.sqrt(dim)
    return np.random.default_rng(seed).normal(size=(n, dim)) @ mixing + shift


def reference_fid(x, y):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def reference_mmd2(x, y):
    k_xx = polynomial_kernel(x, x, degree=3, gamma=1.0 / x.shape[1], coef0=1)
    k_yy = polynomial_kernel(y, y, degree=3, gamma=1.0 / x.shape[1], coef0=1)
    k_xy = polynomial_kernel(x, y, degree=3, gamma=1.0 / x.shape[1], coef0=1)
    m, n = len(x), len(y)
    return ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
            - 2 * k_xy.mean())


def reference_prdc(real, fake, k):
    d_rr, d_ff, d_rf = pairwise_distances(real), pairwise_distances(fake), pairwise_distances(real, fake)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside = d_rf < r_real[:, None]  # (real, fake)
    return {"precision": inside.any(0).mean(), "recall": (d_rf < r_fake[None, :]).any(1).mean(),
            "density": inside.sum(0).mean() / k, "coverage": (d_rf.min(1) < r_real).mean()}


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
def test_fid_matches_scipy_sqrtm(shift):
    x, y = _features(0), _features(1, shift=shift, scale=1.3)
    assert fid(x, y) == pytest.approx(reference_fid(x, y), rel=1e-6, abs=1e-8)


def test_fid_is_zero_for_identical_sets_and_uses_float64():
    x = _features(0).astype(np.float32)
    assert abs(fid(x, x)) < 1e-9


@pytest.mark.parametrize("sizes", [(200, 200), (250, 170)])
def test_kid_matches_sklearn_polynomial_kernel_on_whole_sets(sizes):
    x, y = _features(0, n=sizes[0]), _features(1, n=sizes[1], shift=0.5)
    result = kid(x, y, chunk=64)  # chunking must not change anything
    assert (result["n_real"], result["n_fake"]) == sizes
    assert result["value"] == pytest.approx(reference_mmd2(x, y), rel=1e-9)
    assert result["value"] == pytest.approx(kid(x, y, chunk=4096)["value"], rel=1e-12)


def test_kid_is_near_zero_for_samples_of_one_distribution():
    x, y = _same_mixing(0, n=400), _same_mixing(1, n=400)
    same, shifted = kid(x, y), kid(x, _same_mixing(1, n=400, shift=1.0))
    assert abs(same["value"]) < 3 * same["std_error"]
    assert shifted["value"] > 10 * shifted["std_error"]


@pytest.mark.parametrize("shift", [0.0, 0.15])
def test_kid_standard_error_matches_the_spread_over_fresh_samples(shift):
    """The standard error is what it claims: the spread of KID over independent pairs of sets.

    With equal distributions (shift 0) the first-order term vanishes and the estimate measures the
    second-order noise: it must still be of the right size (within a factor of 2). The estimate errs
    on the safe side: the row means it takes the variance of carry their own sampling noise
    (measured here: 1.2x the spread with a shift, 1.45x without).
    """
    runs = [kid(_same_mixing(2 * i), _same_mixing(2 * i + 1, shift=shift)) for i in range(40)]
    spread = np.std([run["value"] for run in runs], ddof=1)
    claimed = np.sqrt(np.mean([run["std_error"] ** 2 for run in runs]))
    low, high = (0.7, 2.0) if shift == 0 else (0.9, 1.5)
    assert low < claimed / spread < high


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_sklearn_pairwise_distances(k):
    real, fake = _features(0, n=250), _features(1, n=180, shift=0.4, scale=0.8)
    ours = prdc(real, fake, k=k, chunk=64)  # chunking must not change anything
    expected = reference_prdc(real, fake, k)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_prdc_of_identical_sets_is_perfect_on_precision_recall_coverage():
    x = _features(0, n=120)
    result = prdc(x, x, k=5)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0


def test_gan_test_overall_and_per_class():
    logits = np.eye(3)[[0, 1, 2, 2, 0]]
    result = gan_test(logits, np.array([0, 1, 2, 1, 1]), ["a", "b", "c"])
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["per_class"] == {"a": 1.0, "b": pytest.approx(1 / 3), "c": 1.0}


def test_per_class_kid_skips_missing_classes():
    real, fake = _features(0, n=60), _features(1, n=60)
    labels = np.repeat([0, 1], 30)
    result = per_class_kid(real, labels, fake, np.zeros(60, dtype=int), ["a", "b", "c"])
    assert result["per_class"]["b"] is None and result["per_class"]["c"] is None
    assert result["mean"] == result["per_class"]["a"]["value"]
    assert result["per_class"]["a"] == kid(real[:30], fake)


def test_nearest_neighbours_match_sklearn_and_are_exact_for_copies():
    import torch

    from visrep.representations.neighbours import nearest_neighbours

    rng = np.random.default_rng(0)
    bank = rng.integers(0, 256, (500, 64)).astype(np.uint8)
    queries = np.concatenate([bank[:10], rng.integers(0, 256, (20, 64)).astype(np.uint8)])
    distances, index = nearest_distances(torch.from_numpy(queries), torch.from_numpy(bank))
    expected = pairwise_distances(queries.astype(np.float64), bank.astype(np.float64))
    assert np.array_equal(index, expected.argmin(1))
    assert np.allclose(distances, expected.min(1))
    assert np.all(distances[:10] == 0)
    # the search merges its top-k across bank chunks: a 64-row chunk gives sklearn's 3 nearest, in order
    top, found = nearest_neighbours(torch.from_numpy(queries[10:]), torch.from_numpy(bank), k=3, metric="euclidean",
                                    bank_chunk=64)
    assert np.array_equal(top.numpy(), np.argsort(expected[10:], axis=1, kind="stable")[:, :3])
    assert np.allclose(found.numpy(), np.sort(expected[10:], axis=1)[:, :3], rtol=1e-5)


def test_memorisation_flags_copies_not_fresh_samples():
    rng = np.random.default_rng(0)
    reference = rng.gamma(4.0, 1.0, 500)
    fresh = compare_distances(rng.gamma(4.0, 1.0, 500), reference)
    copies = compare_distances(np.concatenate([np.zeros(100), rng.gamma(4.0, 1.0, 400)]), reference)
    assert not fresh["flagged"] and fresh["close_fraction"] < 0.05
    assert copies["flagged"] and copies["exact_copies"] == 100


def test_real_pairs_never_pair_an_image_with_itself_and_keep_the_class():
    labels = np.array([0, 0, 0, 1, 1, 2])
    partners = real_pair_partners(labels, same_class=True, seed=1)
    assert partners[5] == -1  # a class of one has no partner
    paired = partners >= 0
    assert np.all(partners[paired] != np.flatnonzero(paired))
    assert np.all(labels[partners[paired]] == labels[paired])


def test_embedding_consistency_of_a_copy_is_one():
    x = _features(0, n=50)
    result = embedding_consistency(x, x.copy(), x, np.arange(50) % 5)
    assert result["sample_to_condition"]["mean"] == pytest.approx(1.0)


def test_prdc_with_precomputed_real_radii_is_identical():
    from visrep.evaluation.distribution_metrics import knn_radii

    real, fake = _features(0, n=150), _features(1, n=150, shift=0.3)
    assert prdc(real, fake, 5, real_radii=knn_radii(real, 5)) == prdc(real, fake, 5)


def test_the_floor_column_does_not_read_as_a_memorisation_finding():
    from visrep.evaluation.generative_report import table_rows

    metrics = {"model": {"memorisation": {"flagged": False}, "fid": 1.0},
               "floor": {"memorisation": {"flagged": True}, "fid": 0.5}}
    _, rows = table_rows(metrics)
    flag_row = next(row for row in rows if row[0] == "memorisation flagged")
    assert flag_row[1] == "no" and flag_row[2] == "n/a (real training images)"


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 5, 7)])
def test_pixel_neighbours_are_exact_with_int8_products_and_without(shape, monkeypatch):
    import visrep.evaluation.memorisation as memorisation

    rng = np.random.default_rng(4)
    bank = torch.from_numpy(rng.integers(0, 256, (300, *shape), dtype=np.uint8))
    queries = bank[rng.choice(300, 40)].clone()
    queries[:20] = (queries[:20].int() + torch.from_numpy(rng.integers(-3, 4, (20, *shape)))).clamp(0, 255).to(torch.uint8)
    queries[30:] = torch.from_numpy(rng.integers(0, 256, (10, *shape), dtype=np.uint8))  # far from everything
    expected = pairwise_distances(queries.reshape(40, -1).double().numpy(), bank.reshape(300, -1).double().numpy())
    fast = memorisation.pixel_neighbours(queries, bank, query_chunk=16, bank_chunk=64)
    monkeypatch.setattr(memorisation, "_int8_products_work", lambda: False)
    fallback = memorisation.pixel_neighbours(queries, bank)
    for distances, index in (fast, fallback):
        assert np.allclose(distances, expected.min(1) / 255.0, rtol=0, atol=1e-12)
        assert np.allclose(expected[np.arange(40), index], expected.min(1))  # a nearest one (ties allowed)
        assert (distances[20:30] == 0).all()  # exact copies at distance 0
