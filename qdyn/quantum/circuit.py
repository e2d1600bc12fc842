"""One type for every circuit family, and the pieces the families share.

A :class:`Circuit` is static structure plus two executions of the same circuit: ``expval``,
a pure-JAX statevector function (layers in ``lax.scan``) that models run, and ``qnode``, a
factory of the family's PennyLane program written in native gates (rotations, Ising
couplings, CNOT), which tests prove equal to ``expval`` (values, gradients, second order) and
which runs the circuit on any PennyLane device with shots and noise
(:mod:`qdyn.quantum.execution`), draws it, counts its resources and exports it.
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

from typing import Callable, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from ..geometry import safe_norm
from . import gates
from ._pennylane import qml
from .execution import NOISELESS, Execution, NoiseModel, make_device, require


class Circuit(NamedTuple):
    """A parametrised circuit of one family.

    Attributes:
        name: family and size, for reports.
        n_qubits: wires.
        param_shapes: ``{name: shape}`` of the circuit parameters (a ``circuit_params`` dict).
        out_shape: shape of one call's output (``()`` for a single expectation value).
        expval: ``expval(circuit_params, inputs) -> outputs [*out_shape]``, pure JAX.
        qnode: ``qnode(execution=None) -> fn`` with ``expval``'s signature and outputs: the
            family's PennyLane program of native gates as a QNode on the device, shots and
            noise of a :class:`~qdyn.quantum.execution.Execution` (``default.qubit``,
            exact, backprop when None).
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


def jax_qnode(program: Callable, n_qubits: int, execution: Optional[Execution] = None):
    """``program`` (a PennyLane quantum function) as a QNode with the JAX interface on the
    execution's device (``default.qubit``, exact, backprop when ``execution`` is None)."""
    execution = execution or Execution(backend="pennylane")
    require(execution, "energy")  # a device that cannot run this differentiation: one line, not PennyLane's error
    diff_method = execution.diff_method
    if execution.shots is not None and diff_method == "backprop":
        diff_method = None  # values only: sampling has no backprop (qdyn.quantum.execution.require)
    return qml.QNode(program, make_device(execution, n_qubits), interface="jax", diff_method=diff_method)


def noise_of(execution: Optional[Execution]) -> NoiseModel:
    """The execution's noise channels (none without an execution)."""
    return NOISELESS if execution is None else execution.noise


# A fixed frame rotation G (a generic SU(2) element, as Rot angles) and its SO(3) image Q,
# with G (v·σ) G† = (Q v)·σ. Native-gate encodings are written in the frame Qx, so the one
# direction where their Euler angles are singular (Qx ∥ z) is x ∥ Qᵀz, an irrational direction
# no molecule is set up along (unlike the z axis itself, along which diatomics usually lie).
FRAME_ROT = (0.4123, 1.1719, -0.8311)


def _rot_numpy(phi, theta, omega) -> np.ndarray:
    """PennyLane's Rot(φ, θ, ω) = RZ(ω) RY(θ) RZ(φ) in numpy (at import: neither JAX's backend
    nor PennyLane started; gates.rot is the JAX form, tested against PennyLane)."""
    rz = lambda a: np.diag([np.exp(-0.5j * a), np.exp(0.5j * a)])  # noqa: E731
    c, s = np.cos(0.5 * theta), np.sin(0.5 * theta)
    return rz(omega) @ np.array([[c, -s], [s, c]]) @ rz(phi)


_G = _rot_numpy(*FRAME_ROT)
FRAME_Q = np.real(np.einsum("iab,bc,jcd,ad->ij", gates.PAULIS, _G, gates.PAULIS, _G.conj())) / 2


def su2_encoding_native(x, alpha, wire) -> None:
    """G·exp(-i α (x·σ)/2)·G† on ``wire`` as two native ``Rot`` gates.

    ``exp(-i ψ (n·σ)/2) = V RZ(ψ) V†`` with ``V = RZ(φ) RY(θ)`` taking z to n = (θ, φ) polar
    angles of the frame vector Qx, ψ = α|x|; in time order ``Rot(-φ, -θ, ψ)`` then
    ``Rot(0, θ, φ)``. Circuits that commute with global SU(2) rotations (singlets, exchanges,
    Heisenberg observables) give the same expectation values in the frame; anything that does
    not (the siVQLM's RZ(ε)) is conjugated by G (:func:`frame_rz`). Double-where guards keep
    gradients finite at x ∥ Qᵀz and x = 0 (atoms never coincide).
    """
    y = jnp.asarray(FRAME_Q, dtype=x.dtype) @ x
    r, _ = safe_norm(x, tiny=1e-24)
    rho, ok = safe_norm(y[:2], tiny=1e-24)
    safe_xy = jnp.where(ok, y[:2], jnp.ones(2, dtype=x.dtype))
    phi = jnp.where(ok, jnp.arctan2(safe_xy[1], safe_xy[0]), 0.0)
    theta = jnp.where(ok, jnp.arctan2(rho, y[2]), jnp.where(y[2] >= 0, 0.0, jnp.pi))
    qml.Rot(-phi, -theta, alpha * r, wires=wire)
    qml.Rot(0.0, theta, phi, wires=wire)


def frame_rz(angle, wire) -> None:
    """G RZ(angle) G†: an RZ written in the frame of :func:`su2_encoding_native`."""
    a, b, c = FRAME_ROT
    qml.Rot(-c, -b, -a, wires=wire)
    qml.RZ(angle, wires=wire)
    qml.Rot(a, b, c, wires=wire)


def exchange_native(J, wires) -> None:
    """exp(-i J (XX+YY+ZZ)) up to the global phase: the three terms commute, so it is exactly
    IsingXX(2J)·IsingYY(2J)·IsingZZ(2J)."""
    qml.IsingXX(2 * J, wires=wires)
    qml.IsingYY(2 * J, wires=wires)
    qml.IsingZZ(2 * J, wires=wires)


def singlet(wires) -> None:
    """Prepare (|01⟩ - |10⟩)/√2 on two wires from |00⟩ (PennyLane gates)."""
    qml.Hadamard(wires=wires[0])
    qml.PauliZ(wires=wires[0])
    qml.PauliX(wires=wires[1])
    qml.CNOT(wires=wires)


def heisenberg(p: int, q: int):
    """The PennyLane observable (XX+YY+ZZ) on qubits p, q."""
    return qml.PauliX(p) @ qml.PauliX(q) + qml.PauliY(p) @ qml.PauliY(q) + qml.PauliZ(p) @ qml.PauliZ(q)
