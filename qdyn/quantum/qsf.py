"""The quantum symmetry function: an SU(2)-equivariant circuit on an atom's neighbour vectors.

Per atom i the circuit reads ``n`` equivariant vectors v_c (c = 1..n, one per qubit: in the
hybrid model, learnable radial-and-species-weighted sums Σ_j w_c(r_ij, Z_j) r̂_ij over the
neighbours, so neighbour permutations leave them unchanged by construction). Following the
siVQLM (Le et al., New J. Phys. 27, 023015, 2025):

* start in a product of singlets on qubit pairs (0,1), (2,3), …, invariant under U^{⊗n};
* each of ``layers`` data re-uploading layers applies, on qubit c,
  ``exp(-i α_{d,c} (x_c·σ)/2)`` with the bounded vector ``x_c = tanh(|v_c|) v̂_c`` (|x_c| < 1,
  smooth at v → 0), then Heisenberg exchanges ``exp(-i J_{d,k} (XX+YY+ZZ))`` on a ring of
  pairs; a rotation Q of the vectors maps every encoding gate to U(Q)·gate·U(Q)†, the
  exchanges commute with U(Q)^{⊗n} and the singlets absorb it;
* measure every pair's exchange ⟨(XX+YY+ZZ)_{pq}⟩, p < q: n(n-1)/2 SU(2)-invariant numbers in
  [-3, 1] — the atom's "quantum symmetry function" features.

Reflections: SU(2) sees only proper rotations. With ≥ 3 vectors the circuit can depend on
triple products v_a·(v_b×v_c), which flip sign under inversion, so by default the features
are averaged over x → -x (``parity_average``, as the siVQLM does for the water dimer), which
makes them O(3)-invariant at twice the cost.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import pennylane as qml

from ..geometry import safe_norm
from ..validation import QdynInputError
from . import gates
from .statevector import apply_1q_all, apply_exchange_pair, expect_heisenberg, singlet_state


class QSFCircuit(NamedTuple):
    """Static structure and the pure function of a quantum symmetry function.

    Attributes:
        features: ``features(alpha [D, n], J [D, n_ring], vecs [n, 3]) -> [n_out]`` (pure).
        n_qubits: qubits (= vectors read).
        layers: re-uploading layers D.
        ring: exchange pairs of every layer.
        observables: measured pairs (p < q); ``n_out = len(observables)``.
        parity_average: whether features are averaged over x → -x.
    """

    features: Callable
    n_qubits: int
    layers: int
    ring: tuple
    observables: tuple
    parity_average: bool

    @property
    def n_out(self) -> int:
        return len(self.observables)


def bounded_vectors(v):
    """x = tanh(|v|) v̂ for v [..., 3]: |x| < 1, smooth (tanh(r)/r is even in r), no NaN
    gradient at v = 0 (double-where)."""
    r, ok = safe_norm(v, tiny=1e-24)
    return v * jnp.where(ok, jnp.tanh(r) / r, 1.0)[..., None]


def make_qsf(n_qubits: int, layers: int, *, parity_average: bool = True) -> QSFCircuit:
    """Build the circuit for ``n_qubits`` vectors (even, 2..10) and ``layers`` layers.

    Raises:
        QdynInputError: odd or out-of-range qubit count, layers < 1.
    """
    if n_qubits % 2 or not 2 <= n_qubits <= 10:
        raise QdynInputError(f"the quantum symmetry function needs an even number of qubits in 2..10 "
                             f"(singlet pairs), got {n_qubits}")
    if layers < 1:
        raise QdynInputError(f"layers must be ≥ 1, got {layers}")
    n = n_qubits
    singlets = tuple((q, q + 1) for q in range(0, n, 2))
    ring = ((0, 1),) if n == 2 else tuple((q, (q + 1) % n) for q in range(n))
    observables = tuple((p, q) for p in range(n) for q in range(p + 1, n))

    def one(alpha, J, x):
        state = singlet_state(n, singlets, jnp.result_type(x.dtype, jnp.complex64))

        def layer(state, p):
            a, j = p
            state = apply_1q_all(state, gates.su2_encoding(x, a))
            for k, (p_, q_) in enumerate(ring):
                state = apply_exchange_pair(state, j[k], p_, q_)
            return state, None

        state, _ = jax.lax.scan(layer, state, (alpha, J))
        return jnp.stack([expect_heisenberg(state, p, q) for p, q in observables])

    def features(alpha, J, vecs):
        x = bounded_vectors(vecs)
        out = one(alpha, J, x)
        if parity_average:
            out = 0.5 * (out + one(alpha, J, -x))
        return out

    return QSFCircuit(features=features, n_qubits=n, layers=int(layers), ring=ring, observables=observables,
                      parity_average=bool(parity_average))


def qsf_qnode(n_qubits: int, layers: int, *, parity_average: bool = True):
    """The same circuit as a PennyLane QNode (default.qubit, backprop, closed-form
    ``QubitUnitary`` gates): ``features(alpha, J, vecs)``, the reference the tests compare the
    pure-JAX execution with (and a way to draw it or send it to other devices)."""
    ref = make_qsf(n_qubits, layers, parity_average=parity_average)
    dev = qml.device("default.qubit", wires=n_qubits)

    @qml.qnode(dev, interface="jax", diff_method="backprop")
    def circuit(alpha, J, x):
        for p in range(0, n_qubits, 2):  # singlet (|01> - |10>)/sqrt2 on (p, p+1)
            qml.Hadamard(wires=p)
            qml.CNOT(wires=[p, p + 1])
            qml.PauliX(wires=p + 1)
            qml.PauliZ(wires=p)
        for d in range(layers):
            enc = gates.su2_encoding(x, alpha[d])
            for q in range(n_qubits):
                qml.QubitUnitary(enc[q], wires=q)
            for k, (p, q) in enumerate(ref.ring):
                qml.QubitUnitary(gates.exchange(J[d, k]), wires=[p, q])
        return [qml.expval(qml.PauliX(p) @ qml.PauliX(q) + qml.PauliY(p) @ qml.PauliY(q)
                           + qml.PauliZ(p) @ qml.PauliZ(q)) for p, q in ref.observables]

    def features(alpha, J, vecs):
        x = bounded_vectors(vecs)
        out = jnp.stack(circuit(alpha, J, x))
        if parity_average:
            out = 0.5 * (out + jnp.stack(circuit(alpha, J, -x)))
        return out

    return features
