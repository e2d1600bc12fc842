"""A small data re-uploading circuit for per-atom features (the hybrid model's quantum part).

Each layer d: ``RY(θ_{d,q})`` on every qubit with data angles θ, then a trainable
``Rot(φ, θ, ω)`` per qubit and a CNOT ring. Outputs ``⟨Z_q⟩`` for every qubit. The qubit
count is fixed and independent of the system size: one circuit per atom environment,
evaluated with ``vmap`` over atoms. The angles are the bounded encoding
``θ_{d,q} = π · tanh(A_d G_i + b_d)_q`` of the atom's invariant features G_i
(:func:`encoded_expvals`), shared by the hybrid and multistate models.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from ..precision import complex_for
from ._pennylane import qml
from . import gates
from .circuit import Circuit, jax_qnode, noise_of, ring
from .execution import Execution
from .statevector import apply_1q_all, apply_cnot, run_layers, z_signs


def reupload_circuit(n_qubits: int, layers: int) -> Circuit:
    """The re-uploading circuit: ``expval({"W": [D, n, 3]}, angles [D, n]) -> ⟨Z_q⟩ [n]``."""
    zs = z_signs(n_qubits)
    pairs = ring(n_qubits)

    def expval(cparams, angles):
        state = jnp.zeros((2,) * n_qubits, complex_for(angles.dtype)).at[(0,) * n_qubits].set(1.0)

        def encode(state, p):
            return apply_1q_all(state, gates.ry(p[1]))  # gates on different qubits commute: every RY before every Rot

        def trainable(state, p):  # Rot on every qubit, then the CNOT ring: the same for every sample
            w = p[0]
            state = apply_1q_all(state, gates.rot(w[:, 0], w[:, 1], w[:, 2]))
            for c, t in pairs:
                state = apply_cnot(state, c, t)
            return state

        state = run_layers(encode, trainable, state, (cparams["W"], angles))
        return jnp.tensordot(zs, jnp.abs(state) ** 2, axes=n_qubits)

    def qnode(execution: Optional[Execution] = None):
        noise = noise_of(execution)

        def program(cparams, angles):
            for d in range(layers):
                for q in range(n_qubits):
                    qml.RY(angles[d, q], wires=q)
                    qml.Rot(*cparams["W"][d, q], wires=q)
                for c, t in pairs:
                    qml.CNOT(wires=[c, t])
                noise.after_layer(range(n_qubits))
            noise.before_measurement(range(n_qubits))
            return [qml.expval(qml.PauliZ(q)) for q in range(n_qubits)]

        circuit = jax_qnode(program, n_qubits, execution)
        return lambda cparams, angles: jnp.stack(circuit(cparams, angles))

    return Circuit(name=f"reupload[{n_qubits}q, {layers}L]", n_qubits=n_qubits,
                   param_shapes={"W": (layers, n_qubits, 3)}, out_shape=(n_qubits,), expval=expval, qnode=qnode)


def init_encoded(key_enc, key_w, circuit: Circuit, n_feat: int, *, weight_std: float, dtype) -> dict:
    """Initial encoding ``enc_A`` [D, n, n_feat] (unit-variance angles for unit features),
    ``enc_b`` [D, n] = 0 and circuit weights ``qW`` [D, n, 3] ~ N(0, weight_std²)."""
    layers, n_qubits, _ = circuit.param_shapes["W"]
    return {
        "enc_A": jax.random.normal(key_enc, (layers, n_qubits, n_feat), dtype) / jnp.sqrt(n_feat),
        "enc_b": jnp.zeros((layers, n_qubits), dtype),
        "qW": weight_std * jax.random.normal(key_w, circuit.param_shapes["W"], dtype),
    }


def encoded_expvals(circuit_fn, params, G):
    """⟨Z_q⟩ [A, n] of every atom's circuit, fed the angles ``π · tanh(A_d G_i + b_d)``.

    Args:
        circuit_fn: how a :func:`reupload_circuit` runs: its ``expval`` or a QNode of it.
        params: holds ``enc_A`` [D, n, F], ``enc_b`` [D, n] and ``qW`` [D, n, 3].
        G: standardised invariant features [A, F].
    """
    angles = jnp.pi * jnp.tanh(jnp.einsum("dqf,af->adq", params["enc_A"], G) + params["enc_b"][None])  # bounded
    return jax.vmap(circuit_fn, in_axes=(None, 0))({"W": params["qW"]}, angles)
