"""PennyLane QNodes built from the same layouts as the pure-JAX executor.

Two styles of the same circuit, both on ``default.qubit`` with ``interface="jax"`` and
``diff_method="backprop"``:

* ``"closed"``: gates as ``qml.QubitUnitary`` of the closed-form matrices in
  :mod:`qdyn.quantum.gates` (the model's PennyLane backend; also for drawing, resource
  counts, other devices and shots);
* ``"expm"``: every gate as ``qml.QubitUnitary(jax.scipy.linalg.expm(...))`` with unrolled
  layers, the way PennyLane's public ``eqnn_force_field`` demo writes it. This is the
  reference the fast paths are proven equal to, and the baseline of the benchmarks.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import pennylane as qml

from . import gates
from .invariant import cluster_spectra
from .layout import InvariantLayout

Style = Literal["closed", "expm"]


def _check_diff_method(diff_method: str) -> None:
    # Second-order gradients through adjoint differentiation are silently wrong outside jit
    # (stack notes); force training differentiates forces, so only backprop is allowed.
    if diff_method != "backprop":
        raise ValueError(
            f"diff_method={diff_method!r} is not supported: qdyn trains on forces (second-order "
            "gradients), which only 'backprop' computes correctly under jit; use 'backprop'"
        )


def _singlet(wires):
    qml.Hadamard(wires=wires[0])
    qml.PauliZ(wires=wires[0])
    qml.PauliX(wires=wires[1])
    qml.CNOT(wires=wires)


def _heisenberg_observable(pairs):
    terms, coeffs = [], []
    for p, q in pairs:
        for P in (qml.PauliX, qml.PauliY, qml.PauliZ):
            terms.append(P(p) @ P(q))
            coeffs.append(1.0 / len(pairs))
    return qml.Hamiltonian(coeffs, terms)


def invariant_qnode(layout: InvariantLayout, *, style: Style = "closed", diff_method: str = "backprop"):
    """QNode ``circuit(cparams, vecs) -> ⟨O⟩`` for an invariant layout (layers unrolled)."""
    _check_diff_method(diff_method)
    if style not in ("closed", "expm"):
        raise ValueError(f"style must be 'closed' or 'expm', got {style!r}")
    n = layout.n_qubits
    dev = qml.device("default.qubit", wires=n)
    spectra = cluster_spectra(layout)
    heis = jnp.asarray(gates.HEISENBERG)
    paulis = jnp.asarray(gates.PAULIS)
    generators = [
        [(qs, jnp.asarray(gates.heisenberg_sum([(qs.index(p), qs.index(q)) for p, q in prs], len(qs))))
         for qs, prs in orbit.clusters]
        for orbit in layout.exchange
    ]
    observable = _heisenberg_observable(layout.observable)

    def encoding(x, a, wire):
        if style == "closed":
            U = gates.su2_encoding(x, a)
        else:
            U = jax.scipy.linalg.expm(-0.5j * a * jnp.einsum("i,ijk->jk", x, paulis))
        qml.QubitUnitary(U, wires=wire)

    def exchange(J, k):
        orbit = layout.exchange[k]
        if orbit.is_matching:
            U = gates.exchange(J) if style == "closed" else jax.scipy.linalg.expm(-1j * J * heis)
            for p, q in orbit.pairs:
                qml.QubitUnitary(U, wires=[p, q])
        else:
            for c, (qs, lam, V) in enumerate(spectra[k]):
                if style == "closed":
                    U = gates.exp_from_spectrum(J, lam, V)
                else:
                    U = jax.scipy.linalg.expm(-1j * J * generators[k][c][1])
                qml.QubitUnitary(U, wires=list(qs))

    @qml.qnode(dev, interface="jax", diff_method=diff_method)
    def circuit(cparams, vecs):
        for p, q in layout.singlets:
            _singlet([p, q])
        for d in range(layout.layers):
            for q in range(n):
                encoding(vecs[layout.qubit_vector[q]], cparams["alpha"][d, layout.alpha_index[q]], q)
            for b in range(layout.blocks):
                for k in range(layout.n_exchange):
                    exchange(cparams["J"][d, b, k], k)
            if layout.symmetry_breaking:
                for q in range(n):
                    qml.RZ(cparams["eps"][d, layout.alpha_index[q]], wires=q)
        return qml.expval(observable)

    return circuit
