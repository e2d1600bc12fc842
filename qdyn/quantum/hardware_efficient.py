"""The hardware-efficient (non-invariant) circuit the siVQLM paper compares against.

Raw Cartesian components of each difference vector are angle-encoded,
``RX(a x) RY(a y) RZ(a z)`` with a trainable strength a per qubit and layer (data
re-uploading), followed by B hardware-efficient blocks of ``Rot(φ, θ, ω)`` on every qubit
and a ring of CNOTs; the observable is the mean of Z. Nothing here respects rotations or
like-atom exchange: it is the control that shows what the invariant design buys.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..precision import complex_for
from ._pennylane import qml
from . import gates
from .circuit import Circuit, jax_qnode, noise_of, ring
from .execution import Execution
from .statevector import apply_1q_all, apply_cnot, run_layers, z_signs


def _encode_matrix(x, a):
    """RZ(a z) RY(a y) RX(a x), closed form (4 qubits, batch 256: E+F 0.21x, training 0.31x the
    time of the product of the three matrices)."""
    return gates.rz_ry_rx(a * x[0], a * x[1], a * x[2])


def hardware_efficient_circuit(n_vectors: int, *, rep: int, layers: int, blocks: int,
                               scan_unroll: Optional[int] = None) -> Circuit:
    """The control circuit on ``n_vectors × rep`` qubits (qubit q reads vector q mod n_vectors):
    ``expval({"a": [D, n], "W": [D, B, n, 3]}, vecs [n_vectors, 3] Å) -> ⟨mean Z⟩``.

    ``scan_unroll``: layers per ``lax.scan`` iteration of the statevector path (default:
    :func:`~qdyn.quantum.statevector.run_layers`'s choice).
    """
    n = n_vectors * rep
    qubit_vector = np.arange(n) % n_vectors
    pairs = ring(n)
    zmean = z_signs(n).mean(0)

    def expval(cparams, vecs):
        vq = vecs[qubit_vector]
        state = jnp.zeros((2,) * n, dtype=complex_for(vecs.dtype, cparams)).at[(0,) * n].set(1.0)

        def encode(state, p):
            return apply_1q_all(state, jax.vmap(_encode_matrix)(vq, p["a"]))

        def trainable_blocks(state, p):  # the same gates for every sample
            for W in p["W"]:
                state = apply_1q_all(state, gates.rot(W[:, 0], W[:, 1], W[:, 2]))
                for c, t in pairs:
                    state = apply_cnot(state, c, t)
            return state

        state = run_layers(encode, trainable_blocks, state, {"a": cparams["a"], "W": cparams["W"]}, scan_unroll)
        return jnp.sum(jnp.abs(state) ** 2 * zmean)

    def qnode(execution: Optional[Execution] = None):
        noise = noise_of(execution)
        obs = qml.Hamiltonian([1.0 / n] * n, [qml.PauliZ(q) for q in range(n)])

        def program(cparams, vecs):
            for d in range(layers):
                for q in range(n):
                    x = vecs[qubit_vector[q]]
                    a = cparams["a"][d, q]
                    qml.RX(a * x[0], wires=q)
                    qml.RY(a * x[1], wires=q)
                    qml.RZ(a * x[2], wires=q)
                for b in range(blocks):
                    for q in range(n):
                        qml.Rot(*cparams["W"][d, b, q], wires=q)
                    for c, t in pairs:
                        qml.CNOT(wires=[c, t])
                noise.after_layer(range(n))
            noise.before_measurement(range(n))
            return qml.expval(obs)

        return jax_qnode(program, n, execution)

    return Circuit(name=f"hardware_efficient[{n}q, {layers}L]", n_qubits=n,
                   param_shapes={"a": (layers, n), "W": (layers, blocks, n, 3)}, out_shape=(), expval=expval,
                   qnode=qnode)
