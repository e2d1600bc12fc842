"""Adiabatic gradients and nonadiabatic couplings from a diabatic matrix (qdyn.namd.electronic)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn.namd import analytic
from qdyn.namd.electronic import align_phases, electronic_structure, regularized_inverse_gap
from qdyn.testing import random_orthogonal

# one compiled evaluation per model (eager dispatch of every small op is what costs here)
_es = jax.jit(electronic_structure, static_argnames=("W_fn",))


def _el(W, p, R, U_ref=None):
    return _es(W_fn=W, params=p, R=R, U_ref=U_ref)


def _random_params(n_states, key):
    """Perturb the analytic model so no test relies on its particular numbers."""
    _, p, _, _ = analytic.triatomic(n_states)
    k1, k2 = jax.random.split(key)
    c = p["c"] * (1.0 + 0.5 * jax.random.uniform(k1, p["c"].shape))
    c = 0.5 * (c + c.T) * (1 - jnp.eye(n_states))
    return dict(p, c=c, T=p["T"] + 0.1 * jax.random.uniform(k2, (n_states,)))


def _geometry(key):
    """A distorted triatomic near the diabatic seam, where the couplings are large."""
    _, _, _, R = analytic.triatomic(2)
    R = R * 1.07  # bonds ≈ 1.03 Å: inside the Gaussian coupling seam
    return jnp.asarray(R) + 0.03 * jax.random.normal(key, R.shape)


@pytest.mark.parametrize("n_states", [2, 3])
def test_gradients_and_nacs_match_finite_differences(n_states):
    W, _, _, _ = analytic.triatomic(n_states)
    p = _random_params(n_states, jax.random.PRNGKey(n_states))
    R = _geometry(jax.random.PRNGKey(10 + n_states))
    el = _el(W, p, R)
    h = 1e-5
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = jnp.asarray(rng.normal(size=R.shape))
        plus = _el(W, p, R + h * v, el.U)
        minus = _el(W, p, R - h * v, el.U)
        dE = (plus.energy - minus.energy) / (2 * h)
        # central differences with h = 1e-5 Å: truncation and rounding both ~1e-8 here
        np.testing.assert_allclose(np.tensordot(el.grad, v, axes=2), dE, rtol=1e-6, atol=1e-8)
        # d_ij·v = ⟨i| ∂_v j⟩ with phase-aligned eigenvectors
        dU = (plus.U - minus.U) / (2 * h)
        nac_fd = el.U.T @ dU
        nac_v = np.tensordot(el.nac, v, axes=2)
        np.testing.assert_allclose(nac_v, nac_fd - np.diag(np.diag(nac_fd)), rtol=1e-5, atol=1e-7)
    # non-trivial: the couplings are not ~0 here and antisymmetric
    assert np.abs(np.asarray(el.nac)).max() > 0.05
    np.testing.assert_allclose(el.nac, -jnp.swapaxes(el.nac, 0, 1), atol=1e-14)


@pytest.mark.parametrize("n_states", [2, 3])
def test_gradients_and_nacs_rotate_as_vectors(n_states):
    W, _, _, _ = analytic.triatomic(n_states)
    p = _random_params(n_states, jax.random.PRNGKey(3))
    R = _geometry(jax.random.PRNGKey(4))
    Q = jnp.asarray(random_orthogonal(jax.random.PRNGKey(5), reflection=True))
    t = jnp.array([[0.3, -1.2, 0.7]])
    el = _el(W, p, R)
    el_rot = _el(W, p, R @ Q.T + t, el.U)
    np.testing.assert_allclose(el_rot.energy, el.energy, atol=1e-12)
    np.testing.assert_allclose(el_rot.grad, el.grad @ Q.T, atol=1e-10)
    np.testing.assert_allclose(el_rot.nac, el.nac @ Q.T, atol=1e-10)
    # non-trivial: vectors that rotate are not left unchanged by the rotation
    assert np.abs(np.asarray(el.nac @ Q.T - el.nac)).max() > 1e-2
    assert np.abs(np.asarray(el.grad @ Q.T - el.grad)).max() > 1e-2


def test_phase_alignment_and_regularized_gap():
    W, p, _, R = analytic.triatomic(2)
    el = _el(W, p, jnp.asarray(R))
    flipped = el.U * jnp.array([[-1.0, 1.0]])
    np.testing.assert_allclose(align_phases(flipped, el.U), el.U, atol=0)
    # at an exact degeneracy the coupling stays finite (bounded by 1/(2ε)), far from it it is 1/ΔE
    eps = 1e-4
    assert float(regularized_inverse_gap(jnp.asarray(0.0), eps)) == 0.0
    np.testing.assert_allclose(regularized_inverse_gap(jnp.asarray(0.5), eps), 2.0, rtol=1e-7)

    def crossing(params, R):  # a true crossing at R = 0 with zero coupling there
        return jnp.array([[R[0], params * R[0] ** 2], [params * R[0] ** 2, -R[0]]])

    el0 = _es(W_fn=crossing, params=0.3, R=jnp.array([0.0]), gap_regularization=eps)
    assert np.all(np.isfinite(np.asarray(el0.nac)))
    assert np.abs(np.asarray(el0.nac)).max() <= 1.0 / (2 * eps)


def test_closed_form_two_state_eigh_matches_lapack():
    from qdyn.namd.electronic import eigh_symmetric

    rng = np.random.default_rng(1)
    for A in [rng.normal(size=(2, 2)) for _ in range(5)] + [np.diag([0.3, 0.3]), np.array([[0.0, 1e-9], [1e-9, 0.0]])]:
        A = 0.5 * (A + A.T)
        E, U = eigh_symmetric(jnp.asarray(A))
        np.testing.assert_allclose(E, np.linalg.eigvalsh(A), atol=1e-14)
        np.testing.assert_allclose(U @ jnp.diag(E) @ U.T, A, atol=1e-14)
        np.testing.assert_allclose(U.T @ U, np.eye(2), atol=1e-14)
