"""The statevector kernels against dense Kronecker-product matrices, on every qubit (pair)
of a 5-qubit random state: the 3-D/5-D views the kernels work on must address the same
amplitudes as the (2,)*n tensor they stand for (qubit 0 = most significant bit)."""

from functools import reduce

import jax.numpy as jnp
import numpy as np
import pytest

from qdyn.quantum import gates
from qdyn.quantum import statevector as sv

N = 5


def _embed(ops: dict) -> np.ndarray:
    """⊗_q ops.get(q, I) as a 2^N × 2^N matrix."""
    return reduce(np.kron, [ops.get(q, np.eye(2)) for q in range(N)])


def _cnot(c, t):
    p0, p1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    return _embed({c: p0}) + _embed({c: p1, t: gates.X})


def _swap(p, q):
    return 0.5 * sum(_embed({p: P, q: P}) for P in (np.eye(2), gates.X, gates.Y, gates.Z))


@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(7)
    psi = rng.normal(size=2**N) + 1j * rng.normal(size=2**N)
    return psi / np.linalg.norm(psi)


def _tensor(psi):
    return jnp.asarray(psi.reshape((2,) * N))


@pytest.mark.parametrize("q", range(N))
def test_apply_1q_equals_kron(state, q):
    rng = np.random.default_rng(q)
    U = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
    out = np.asarray(sv.apply_1q(_tensor(state), jnp.asarray(U), q)).reshape(-1)
    np.testing.assert_allclose(out, _embed({q: U}) @ state, atol=1e-14)
    assert np.linalg.norm(out - state) > 0.1  # the gate acted


def test_cnot_and_swap_equal_dense_matrices(state):
    for c in range(N):
        for t in range(N):
            if c == t:
                continue
            np.testing.assert_allclose(np.asarray(sv.apply_cnot(_tensor(state), c, t)).reshape(-1),
                                       _cnot(c, t) @ state, atol=1e-14)
            np.testing.assert_allclose(np.asarray(sv.swap_qubits(_tensor(state), c, t)).reshape(-1),
                                       _swap(c, t) @ state, atol=1e-14)


@pytest.mark.parametrize("contracted", [False, True], ids=["elementwise", "contracted"])
def test_exchange_and_heisenberg_equal_dense_matrices(state, contracted, monkeypatch):
    """Both ways of applying an exchange (elementwise below CONTRACT_MIN_QUBITS, a contraction
    with the 4×4 gate from there on) against the exact exponential, pairs in either order."""
    monkeypatch.setattr(sv, "CONTRACT_MIN_QUBITS", 0 if contracted else 99)
    J = 0.37
    for p, q in [(0, 1), (1, 4), (3, 0)]:
        H = sum(_embed({p: P, q: P}) for P in gates.PAULIS)
        ref = np.exp(1j * J) * (np.cos(2 * J) * state - 1j * np.sin(2 * J) * _swap(p, q) @ state)
        ev = np.linalg.eigh(H)
        exact = ev[1] @ (np.exp(-1j * J * ev[0]) * (ev[1].conj().T @ state))
        np.testing.assert_allclose(ref, exact, atol=1e-13)  # the closed form itself
        out = np.asarray(sv.apply_exchange_pair(_tensor(state), J, p, q)).reshape(-1)
        np.testing.assert_allclose(np.exp(1j * J) * out, exact, atol=1e-13)
        np.testing.assert_allclose(float(sv.expect_heisenberg(_tensor(state), p, q)),
                                   np.real(state.conj() @ H @ state), atol=1e-13)


def test_block_matrix_is_the_product_of_the_gates(state):
    """A sample-independent gate sequence multiplied out (run_layers' dense path) equals the
    product of the gates' dense matrices."""
    J, U = 0.29, np.asarray(gates.rot(0.3, -1.1, 0.7))

    def sequence(psi):
        psi = sv.apply_1q(psi, U, 2)
        psi = sv.apply_cnot(psi, 4, 1)
        return sv.apply_exchange_pair(psi, J, 0, 3)

    exchange = np.cos(2 * J) * np.eye(2**N) - 1j * np.sin(2 * J) * _swap(0, 3)  # the kernel drops e^{iJ}
    expected = exchange @ _cnot(4, 1) @ _embed({2: U})
    M = np.asarray(sv.block_matrix(sequence, N, jnp.complex128))
    np.testing.assert_allclose(M, expected, atol=1e-13)
    assert np.abs(M - np.diag(np.diag(M))).max() > 0.1  # entangling: not a trivial diagonal
    np.testing.assert_allclose(np.asarray(sv.apply_matrix(_tensor(state), M)).reshape(-1), expected @ state,
                               atol=1e-13)
