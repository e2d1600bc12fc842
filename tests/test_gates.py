"""Closed-form gate matrices against matrix exponentials and PennyLane's own matrices."""

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml
import pytest

from qdyn.quantum import gates
from qdyn.quantum.circuit import _rot_numpy


def expm(A):
    return np.asarray(jax.scipy.linalg.expm(jnp.asarray(A)))


@pytest.mark.parametrize("seed", range(3))
def test_su2_encoding_equals_expm(seed):
    rng = np.random.default_rng(seed)
    x, a = rng.normal(size=3), rng.normal()
    ref = expm(-0.5j * a * np.einsum("i,ijk->jk", x, gates.PAULIS))
    np.testing.assert_allclose(np.asarray(gates.su2_encoding(jnp.asarray(x), a)), ref, atol=1e-13)


def test_su2_encoding_gradient_finite_at_zero_vector():
    f = lambda x: jnp.real(gates.su2_encoding(x, 0.7)[0, 1] * (1 + 1j)).sum()
    g = jax.grad(f)(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(g)))
    # d/dx of -i (α/2)(x σ_x) ... entry [0,1] = -(α/2)(y + i x) at small x
    np.testing.assert_allclose(np.asarray(g), [0.35, -0.35, 0.0], atol=1e-12)


@pytest.mark.parametrize("J", [0.0, 0.3, -1.1, 2.7])
def test_exchange_equals_expm(J):
    np.testing.assert_allclose(np.asarray(gates.exchange(J)), expm(-1j * J * gates.HEISENBERG), atol=1e-13)


def test_heisenberg_identity():
    np.testing.assert_allclose(gates.HEISENBERG, 2 * gates.SWAP - np.eye(4), atol=0)


def test_cluster_spectrum_equals_expm():
    H = gates.heisenberg_sum([(0, 2), (1, 2)], 3)
    lam, V = gates.spectral(H)
    np.testing.assert_allclose(np.asarray(gates.exp_from_spectrum(0.37, lam, V)), expm(-0.37j * H), atol=1e-12)


def test_rotations_match_pennylane():
    a, b, c = 0.3, -1.2, 2.2
    np.testing.assert_allclose(np.asarray(gates.rx(a)), qml.matrix(qml.RX(a, 0)), atol=1e-14)
    np.testing.assert_allclose(np.asarray(gates.ry(a)), qml.matrix(qml.RY(a, 0)), atol=1e-14)
    np.testing.assert_allclose(np.asarray(gates.rz(a)), qml.matrix(qml.RZ(a, 0)), atol=1e-14)
    np.testing.assert_allclose(np.asarray(gates.rot(a, b, c)), qml.matrix(qml.Rot(a, b, c, 0)), atol=1e-14)
    np.testing.assert_allclose(_rot_numpy(a, b, c), qml.matrix(qml.Rot(a, b, c, 0)), atol=1e-14)  # circuit's frame


def test_kron_1q_equals_numpy_kron_batched():
    """⊗ of three one-qubit matrices, factor 0 most significant, for a batch of two."""
    rng = np.random.default_rng(0)
    Us = rng.normal(size=(2, 3, 2, 2)) + 1j * rng.normal(size=(2, 3, 2, 2))
    K = np.asarray(gates.kron_1q(jnp.asarray(Us)))
    for b in range(2):
        np.testing.assert_allclose(K[b], np.kron(np.kron(Us[b, 0], Us[b, 1]), Us[b, 2]), atol=1e-14)


def test_rz_ry_rx_equals_the_product():
    a, b, c = 0.4, -1.3, 2.1
    np.testing.assert_allclose(np.asarray(gates.rz_ry_rx(a, b, c)),
                               np.asarray(gates.rz(c) @ gates.ry(b) @ gates.rx(a)), atol=1e-14)
