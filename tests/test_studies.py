"""The paper's studies (benchmarks/study_*.py): the pieces that decide what a study measures.

Cheap checks only (the studies themselves are benchmark scripts): the label noise has the
advertised size and leaves the clean data alone; the trainability sweep's parameter draws
cover their periods, its observables are normalised, and its gradient variances are finite.
"""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn.data.shipped import load_shipped

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def noisy_labels():
    return _load("study_noisy_labels")


@pytest.fixture(scope="module")
def trainability():
    return _load("study_trainability")


def test_label_noise_has_the_requested_size_and_spares_the_clean_data(noisy_labels):
    clean = load_shipped("H2O")
    E0, F0 = clean.E.copy(), clean.F.copy()
    noisy, sigma_E, sigma_F = noisy_labels.with_label_noise(clean, 0.5, seed=3)
    np.testing.assert_allclose(sigma_E, 0.5 * np.std(E0))
    np.testing.assert_allclose(sigma_F, 0.5 * np.sqrt(np.mean(F0[clean.mask] ** 2)))
    # 500 energies and 4500 force components: the measured spread within a few standard errors
    np.testing.assert_allclose(np.std(noisy.E - E0), sigma_E, rtol=0.15)
    np.testing.assert_allclose(np.std((noisy.F - F0)[clean.mask]), sigma_F, rtol=0.05)
    np.testing.assert_array_equal(clean.E, E0)  # the clean dataset is not modified
    np.testing.assert_array_equal(noisy.R, clean.R)
    same, _, _ = noisy_labels.with_label_noise(clean, 0.0)
    np.testing.assert_array_equal(same.F, F0)


def test_trainability_draws_cover_their_periods_and_gradients_are_finite(trainability):
    expval, shapes = trainability.make_circuit("invariant", 4, 2)
    draws = [trainability.draw_params("invariant", "random", shapes, k) for k in jax.random.split(jax.random.PRNGKey(0), 64)]
    J = np.concatenate([np.ravel(d["J"]) for d in draws])
    assert 0.0 <= J.min() and J.max() <= np.pi and J.max() - J.min() > 0.8 * np.pi
    vecs = trainability._water_vectors()
    values = np.array([float(v) for v in jax.vmap(jax.jit(expval), in_axes=(0, None))(
        jax.tree.map(lambda *x: jnp.stack(x), *draws[:8]), vecs)])
    # the invariant observable, normalised by 3, lies in [-1, 1/3] and varies with the weights
    assert values.min() >= -1 - 1e-12 and values.max() <= 1 / 3 + 1e-12 and np.ptp(values) > 1e-3
    for kind in trainability.CIRCUITS:
        row = trainability.gradient_variance(kind, "random", 4, 2, 8, jnp.asarray(vecs))
        assert np.isfinite(row["grad_variance"]) and row["grad_variance"] > 0
        assert row["n_weights"] == sum(int(np.prod(s)) for s in trainability.make_circuit(kind, 4, 2)[1].values())
