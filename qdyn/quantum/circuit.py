"""One type for every circuit family, and the pieces the families share.

A :class:`Circuit` is static structure plus two executions of the same circuit: ``expval``,
a pure-JAX statevector function (layers in ``lax.scan``) that models run, and ``qnode``, a
factory of the PennyLane reference built from PennyLane gates, which tests prove equal to
``expval`` (values and gradients) and which draws the circuit or runs it on another device.
The families: :func:`qdyn.quantum.invariant.invariant_circuit` (siVQLM),
:func:`qdyn.quantum.hardware_efficient.hardware_efficient_circuit` (its non-invariant
control), :func:`qdyn.quantum.reupload.reupload_circuit` (per-atom circuit of the hybrid) and
:func:`qdyn.quantum.qsf.qsf_circuit` (quantum symmetry function).

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax.numpy as jnp
    >>> from qdyn.quantum.reupload import reupload_circuit
    >>> circuit = reupload_circuit(2, layers=1)
    >>> params = {k: jnp.zeros(s) for k, s in circuit.param_shapes.items()}
    >>> circuit.expval(params, jnp.zeros((1, 2)))  # ⟨Z_q⟩ of |00⟩
    Array([1., 1.], dtype=float64)
    >>> circuit.qnode()(params, jnp.zeros((1, 2)))
    Array([1., 1.], dtype=float64)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import pennylane as qml


class Circuit(NamedTuple):
    """A parametrised circuit of one family.

    Attributes:
        name: family and size, for reports.
        n_qubits: wires.
        param_shapes: ``{name: shape}`` of the circuit parameters (a ``circuit_params`` dict).
        out_shape: shape of one call's output (``()`` for a single expectation value).
        expval: ``expval(circuit_params, inputs) -> outputs [*out_shape]``, pure JAX.
        qnode: ``qnode(device_name="default.qubit", *, diff_method="backprop") -> fn`` with
            ``expval``'s signature and outputs, built from PennyLane gates on that device.
    """

    name: str
    n_qubits: int
    param_shapes: dict
    out_shape: tuple
    expval: Callable
    qnode: Callable


def ring(n_qubits: int) -> tuple[tuple[int, int], ...]:
    """Nearest-neighbour pairs (q, q+1 mod n) of a ring of qubits, each pair once."""
    if n_qubits <= 2:
        return ((0, 1),) if n_qubits == 2 else ()
    return tuple((q, (q + 1) % n_qubits) for q in range(n_qubits))


def check_diff_method(diff_method: str) -> None:
    """Refuse every differentiation method but backprop.

    Second-order gradients through adjoint differentiation are silently wrong outside jit,
    and force training differentiates forces, so only backprop is allowed.
    """
    if diff_method != "backprop":
        raise ValueError(
            f"diff_method={diff_method!r} is not supported: qdyn trains on forces (second-order "
            "gradients), which only 'backprop' computes correctly under jit; use 'backprop'"
        )


def jax_qnode(quantum_fn: Callable, n_qubits: int, *, device_name: str = "default.qubit",
              diff_method: str = "backprop"):
    """``quantum_fn`` as a QNode with the JAX interface on ``device_name`` (``n_qubits`` wires)."""
    check_diff_method(diff_method)
    return qml.QNode(quantum_fn, qml.device(device_name, wires=n_qubits), interface="jax", diff_method=diff_method)


def singlet(wires) -> None:
    """Prepare (|01⟩ - |10⟩)/√2 on two wires from |00⟩ (PennyLane gates)."""
    qml.Hadamard(wires=wires[0])
    qml.PauliZ(wires=wires[0])
    qml.PauliX(wires=wires[1])
    qml.CNOT(wires=wires)


def heisenberg(p: int, q: int):
    """The PennyLane observable (XX+YY+ZZ) on qubits p, q."""
    return qml.PauliX(p) @ qml.PauliX(q) + qml.PauliY(p) @ qml.PauliY(q) + qml.PauliZ(p) @ qml.PauliZ(q)
