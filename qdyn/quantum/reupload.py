"""A small data re-uploading circuit for per-atom features (the hybrid model's quantum part).

Each layer d: ``RY(θ_{d,q})`` on every qubit with data angles θ (bounded, computed by the
caller from invariant features), then a trainable ``Rot(φ, θ, ω)`` per qubit and a CNOT
ring. Outputs ``⟨Z_q⟩`` for every qubit. The qubit count is fixed and independent of the
system size: one circuit per atom environment, evaluated with ``vmap`` over atoms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pennylane as qml

from . import gates
from .statevector import apply_1q, apply_cnot, z_signs


def _ring(n):
    return [] if n == 1 else [(0, 1)] if n == 2 else [(q, (q + 1) % n) for q in range(n)]


def make_expvals(n_qubits: int):
    """``expvals(W [D, n, 3], angles [D, n]) -> ⟨Z_q⟩ [n]`` in pure JAX (layers in scan)."""
    zs = z_signs(n_qubits)
    ring = _ring(n_qubits)

    def expvals(W, angles):
        dtype = jnp.result_type(angles.dtype, jnp.complex64)
        state = jnp.zeros((2,) * n_qubits, dtype).at[(0,) * n_qubits].set(1.0)

        def layer(state, p):
            w, a = p
            Ry = gates.ry(a)
            Rs = gates.rot(w[:, 0], w[:, 1], w[:, 2])
            for q in range(n_qubits):
                state = apply_1q(state, Rs[q] @ Ry[q], q)
            for c, t in ring:
                state = apply_cnot(state, c, t)
            return state, None

        state, _ = jax.lax.scan(layer, state, (W, angles))
        prob = jnp.abs(state) ** 2
        return jnp.tensordot(zs, prob, axes=n_qubits)

    return expvals


def reupload_qnode(n_qubits: int):
    """The same circuit as a PennyLane QNode (default.qubit, backprop): the reference."""
    dev = qml.device("default.qubit", wires=n_qubits)

    @qml.qnode(dev, interface="jax", diff_method="backprop")
    def circuit(W, angles):
        for d in range(W.shape[0]):
            for q in range(n_qubits):
                qml.RY(angles[d, q], wires=q)
                qml.Rot(*W[d, q], wires=q)
            for c, t in _ring(n_qubits):
                qml.CNOT(wires=[c, t])
        return [qml.expval(qml.PauliZ(q)) for q in range(n_qubits)]

    return lambda W, angles: jnp.stack(circuit(W, angles))
