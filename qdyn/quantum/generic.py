"""The generic (non-invariant) variational circuit the siVQLM paper compares against.

Raw Cartesian components of each difference vector are angle-encoded,
``RX(a x) RY(a y) RZ(a z)`` with a trainable strength a per qubit and layer (data
re-uploading), followed by B hardware-efficient blocks of ``Rot(φ, θ, ω)`` on every qubit
and a ring of CNOTs; the observable is the mean of Z. Nothing here respects rotations or
like-atom exchange: it is the control that shows what the invariant design buys.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml

from . import gates
from .statevector import apply_1q, apply_cnot, z_signs


@dataclass(frozen=True)
class GenericLayout:
    n_vectors: int
    rep: int
    layers: int
    blocks: int

    @property
    def n_qubits(self) -> int:
        return self.n_vectors * self.rep

    @property
    def qubit_vector(self) -> tuple[int, ...]:
        return tuple(q % self.n_vectors for q in range(self.n_qubits))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"a": (self.layers, self.n_qubits), "W": (self.layers, self.blocks, self.n_qubits, 3)}

    def cnot_ring(self):
        n = self.n_qubits
        if n == 1:
            return []
        if n == 2:
            return [(0, 1)]
        return [(q, (q + 1) % n) for q in range(n)]


def _encode_matrix(x, a):
    return gates.rz(a * x[2]) @ gates.ry(a * x[1]) @ gates.rx(a * x[0])


def make_expval(layout: GenericLayout, *, scan_unroll: int = 1):
    """``expval(cparams, vecs [n_vec, 3]) -> ⟨mean Z⟩`` in pure JAX, layers in lax.scan."""
    n = layout.n_qubits
    qv = np.asarray(layout.qubit_vector)
    zmean = z_signs(n).mean(0)
    ring = layout.cnot_ring()

    def expval(cparams, vecs):
        vq = vecs[qv]
        state = jnp.zeros((2,) * n, dtype=jnp.result_type(vecs.dtype, jnp.complex64)).at[(0,) * n].set(1.0)

        def layer(state, p):
            Us = jax.vmap(_encode_matrix)(vq, p["a"])
            for q in range(n):
                state = apply_1q(state, Us[q], q)
            for b in range(layout.blocks):
                W = p["W"][b]
                Rs = gates.rot(W[:, 0], W[:, 1], W[:, 2])
                for q in range(n):
                    state = apply_1q(state, Rs[q], q)
                for c, t in ring:
                    state = apply_cnot(state, c, t)
            return state, None

        state, _ = jax.lax.scan(layer, state, {"a": cparams["a"], "W": cparams["W"]}, unroll=scan_unroll)
        return jnp.sum(jnp.abs(state) ** 2 * zmean)

    return expval


def generic_qnode(layout: GenericLayout, *, diff_method: str = "backprop"):
    """The same circuit as a PennyLane QNode with PennyLane's own gates (the reference)."""
    from .qnodes import _check_diff_method

    _check_diff_method(diff_method)
    n = layout.n_qubits
    dev = qml.device("default.qubit", wires=n)
    obs = qml.Hamiltonian([1.0 / n] * n, [qml.PauliZ(q) for q in range(n)])

    @qml.qnode(dev, interface="jax", diff_method=diff_method)
    def circuit(cparams, vecs):
        for d in range(layout.layers):
            for q in range(n):
                x = vecs[layout.qubit_vector[q]]
                a = cparams["a"][d, q]
                qml.RX(a * x[0], wires=q)
                qml.RY(a * x[1], wires=q)
                qml.RZ(a * x[2], wires=q)
            for b in range(layout.blocks):
                for q in range(n):
                    qml.Rot(*cparams["W"][d, b, q], wires=q)
                for c, t in layout.cnot_ring():
                    qml.CNOT(wires=[c, t])
        return qml.expval(obs)

    return circuit
