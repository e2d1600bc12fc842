"""Bring your own circuit: a PennyLane quantum function as a qdyn :class:`Circuit`.

A user writes a quantum function ``qfunc(inputs, **weights)`` that applies gates and returns
nothing; qdyn adds the measurement. It is named by import path (``"mypkg.mymodule:fn"``) in a
model config, so run directories record it and ``qdyn eval``/``md``/``export`` rebuild it::

    circuit:
      qfunc: my_circuits:water_circuit   # module:function, importable (installed, PYTHONPATH or cwd)
      wires: 2
      weight_shapes: {alpha: [2, 2], J: [2]}  # PennyLane's `qml.qnn` convention: {name: shape}
      observable: heisenberg             # heisenberg | z | module:function(wires) -> [observables]
      init: {alpha: {mean: 1.0, std: 0.1}}

The weights are keyword arguments of ``qfunc`` (as in ``qml.qnn.KerasLayer``), so a shape can
come from a template's ``shape()`` helper (``qml.StronglyEntanglingLayers.shape(2, 4)``).

Two places take a user circuit:

* a molecular template model (family ``custom``): ``inputs`` are the template's difference
  vectors [n_vectors, 3] Å, the output is the mean of the observable's terms (the siVQLM slot);
* the hybrid's per-atom branch (``branch: custom``): ``inputs`` are the bounded feature
  angles ``π·tanh(A G_i + b)`` [*input_shape], the outputs are the terms' expectation values
  [n_terms], which the hybrid's integration layer reads.

Both executions of :class:`~qdyn.quantum.circuit.Circuit` exist. ``qnode`` is the qfunc plus
measurement as a QNode on any device of an :class:`~qdyn.quantum.execution.Execution` — for
a user circuit the default is ``default.qubit`` with backprop (the path with correct second
order gradients, which force training needs). ``expval`` is the fast path: the qfunc's
operations, recorded at trace time and decomposed until each has a matrix, applied to qdyn's
pure-JAX statevector (:mod:`qdyn.quantum.statevector`); tests prove it equal to the QNode.
It needs unitary gates only (no channels, mid-circuit measurements or state preparations
that have no matrix); :func:`probe` finds out at build time.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..precision import complex_for
from ..validation import QdynInputError
from ._pennylane import qml
from .circuit import Circuit, jax_qnode, noise_of
from .execution import Execution
from .statevector import apply_dense

_PAULI_MATRICES = {"X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]),
                   "Z": np.array([[1, 0], [0, -1]])}
BUILTIN_OBSERVABLES = ("heisenberg", "z")


class WeightInit(BaseModel):
    """Normal initialisation N(mean, std²) of one weight array."""

    model_config = ConfigDict(extra="forbid")

    mean: float = Field(0.0, description="mean of the initial values (radians for rotation angles)")
    std: float = Field(0.1, ge=0, description="spread of the initial values")


class UserCircuit(BaseModel):
    """The ``circuit:`` block naming a user's PennyLane quantum function."""

    model_config = ConfigDict(extra="forbid")

    qfunc: str = Field(..., description="import path 'package.module:function' of qfunc(inputs, **weights), "
                                        "which applies gates and returns nothing")
    wires: int = Field(..., ge=1, le=16, description="number of qubits the qfunc acts on (wires 0..wires-1)")
    weight_shapes: dict[str, list[int]] = Field(
        default_factory=dict, description="{keyword: shape} of the trainable weights (PennyLane qml.qnn convention)")
    observable: str = Field("heisenberg", description=(
        "what qdyn measures: 'heisenberg' (XX+YY+ZZ of every wire pair: SU(2) invariant), 'z' (Z of every wire), "
        "or 'module:function' taking the wire count and returning a list of PennyLane observables"))
    input_shape: Optional[list[int]] = Field(
        None, description="hybrid branch only: shape of the per-atom angle array the qfunc receives (default [wires])")
    init: dict[str, WeightInit] = Field(default_factory=dict,
                                        description="per-weight initialisation; others N(0, 0.1²)")

    @field_validator("qfunc", mode="before")
    @classmethod
    def _path_of_callable(cls, value):
        return import_path(value) if callable(value) else value

    @field_validator("qfunc", "observable")
    @classmethod
    def _looks_like_a_path(cls, value, info):
        if info.field_name == "observable" and value in BUILTIN_OBSERVABLES:
            return value
        module, _, name = value.partition(":")
        if not module or not name:
            raise ValueError(f"{value!r} is not an import path 'package.module:function'")
        return value

    @field_validator("weight_shapes")
    @classmethod
    def _positive_shapes(cls, value):
        for name, shape in value.items():
            if not name.isidentifier() or any(s < 1 for s in shape):
                raise ValueError(f"weight {name!r}: needs a keyword name and positive dimensions, got {shape}")
        return value

    def weight_init(self, name: str) -> WeightInit:
        return self.init.get(name, WeightInit())


def import_path(fn: Callable) -> str:
    """``module:qualname`` of a function, checked to import back to the same object: a config
    can only record what another process can import (not a notebook cell or a closure)."""
    path = f"{fn.__module__}:{fn.__qualname__}"
    try:
        found = load_object(path)
    except QdynInputError:
        found = None
    if found is not fn:
        raise QdynInputError(f"{getattr(fn, '__name__', fn)!r} cannot be recorded by import path ({path} does not "
                             "import back to it): define the qfunc at the top level of an importable module")
    return path


def load_object(path: str):
    """The object at ``'package.module:name'`` (the current directory is searched too, as
    ``python -m`` would).

    Raises:
        QdynInputError: one line naming the module or attribute that could not be found.
    """
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] or os.getcwd() in sys.path:
            raise QdynInputError(f"circuit {path!r}: cannot import module {module_name!r} ({exc})") from None
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc2:
            raise QdynInputError(f"circuit {path!r}: cannot import module {module_name!r} ({exc2}); install it or "
                                 "put its directory on PYTHONPATH") from None
        except Exception as exc2:  # found in the current directory, but raised while importing
            raise QdynInputError(f"circuit {path!r}: importing {module_name!r} failed: "
                                 f"{type(exc2).__name__}: {exc2}") from None
        finally:
            sys.path.remove(os.getcwd())
    except Exception as exc:  # the user's module raised while importing: name it, one line
        raise QdynInputError(f"circuit {path!r}: importing {module_name!r} failed: "
                             f"{type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise QdynInputError(f"circuit {path!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def observable_terms(observable: str, n_wires: int) -> list:
    """The observables whose expectation values a user circuit returns."""
    if observable == "heisenberg":
        if n_wires < 2:
            raise QdynInputError("observable 'heisenberg' needs at least 2 wires; use 'z' or your own")
        pairs = [(p, q) for p in range(n_wires) for q in range(p + 1, n_wires)]
        return [qml.PauliX(p) @ qml.PauliX(q) + qml.PauliY(p) @ qml.PauliY(q) + qml.PauliZ(p) @ qml.PauliZ(q)
                for p, q in pairs]
    if observable == "z":
        return [qml.PauliZ(q) for q in range(n_wires)]
    terms = load_object(observable)(n_wires)
    terms = list(terms) if isinstance(terms, (list, tuple)) else [terms]
    if not terms or not all(isinstance(t, qml.operation.Operator) for t in terms):
        raise QdynInputError(f"observable {observable!r} must return a PennyLane observable or a list of them")
    return terms


def _unitary_ops(ops, where: str):
    """Decompose operations until each has a matrix (the statevector path applies matrices)."""
    out = []
    for op in ops:
        if isinstance(op, qml.GlobalPhase) or (op.has_matrix and len(op.wires) <= 4):
            out.append(op)
        elif op.has_decomposition:
            out.extend(_unitary_ops(op.decomposition(), where))
        else:
            raise QdynInputError(f"{where}: operation {op.name} has no matrix or decomposition; the statevector "
                                 "backend needs unitary gates (use execution backend 'pennylane')")
    return out


def _apply_op(state, op, dtype):
    if isinstance(op, qml.GlobalPhase):  # exp(-i φ) on every amplitude
        return state * jnp.exp(-1j * jnp.asarray(op.data[0])).astype(dtype)
    U = jnp.asarray(qml.matrix(op), dtype=dtype)
    return apply_dense(state, U, [int(w) for w in op.wires])


def _term_expval(state, term):
    """⟨ψ|O|ψ⟩ of a Pauli sentence (Pauli words applied qubit by qubit) or any matrix observable."""
    sentence = term.pauli_rep
    if sentence is None:
        M = jnp.asarray(qml.matrix(term), dtype=state.dtype)
        return jnp.real(jnp.vdot(state, apply_dense(state, M, [int(w) for w in term.wires])))
    total = 0.0
    for word, coeff in sentence.items():
        psi = state
        for wire, pauli in word.items():
            psi = apply_dense(psi, jnp.asarray(_PAULI_MATRICES[pauli], dtype=state.dtype), [int(wire)])
        total = total + jnp.real(coeff * jnp.vdot(state, psi))
    return total


def user_circuit(spec: UserCircuit, input_shape: tuple, *, reduce: str) -> Circuit:
    """A :class:`Circuit` from a user's quantum function.

    Args:
        spec: the ``circuit:`` settings.
        input_shape: shape of one call's ``inputs`` (template: [n_vectors, 3]; branch: angles).
        reduce: ``"mean"`` (one scalar: the mean of the observable's terms, template models)
            or ``"none"`` (every term's expectation value [n_terms], the hybrid branch).

    Raises:
        QdynInputError: the qfunc cannot be imported, rejects the declared weights or inputs,
            acts on undeclared wires, or returns something.
    """
    qfunc = load_object(spec.qfunc)
    n = spec.wires
    terms = observable_terms(spec.observable, n)
    probe(qfunc, spec, input_shape)
    shapes = {k: tuple(v) for k, v in spec.weight_shapes.items()}
    finish = (lambda values: jnp.mean(jnp.stack(values))) if reduce == "mean" else jnp.stack

    def expval(cparams, inputs):
        dtype = complex_for(inputs, cparams)
        tape = qml.tape.make_qscript(qfunc)(inputs, **cparams)
        state = jnp.zeros((2,) * n, dtype).at[(0,) * n].set(1.0)
        for op in _unitary_ops(tape.operations, spec.qfunc):
            state = _apply_op(state, op, dtype)
        return finish([_term_expval(state, t) for t in terms])

    def qnode(execution: Optional[Execution] = None):
        noise = noise_of(execution)

        def program(cparams, inputs):
            qfunc(inputs, **cparams)
            noise.after_layer(range(n))  # the circuit's layers are the user's: channels act once, at the end
            noise.before_measurement(range(n))
            if reduce == "mean":  # one observable: the QNode itself is the circuit (draw, specs, QASM)
                return qml.expval(qml.dot([1.0 / len(terms)] * len(terms), terms))
            return [qml.expval(t) for t in terms]

        circuit = jax_qnode(program, n, execution)
        if reduce == "mean":
            return circuit
        return lambda cparams, inputs: jnp.stack(circuit(cparams, inputs))

    out_shape = () if reduce == "mean" else (len(terms),)
    return Circuit(name=f"user[{spec.qfunc}, {n}q]", n_qubits=n, param_shapes=shapes, out_shape=out_shape,
                   expval=expval, qnode=qnode)


def probe(qfunc: Callable, spec: UserCircuit, input_shape: tuple) -> None:
    """Record the qfunc once with zero inputs and weights: its signature takes the declared
    weights, it stays on the declared wires and returns nothing (qdyn measures).

    Raises:
        QdynInputError: one line naming what does not fit.
    """
    where = f"circuit {spec.qfunc}"
    try:
        inspect.signature(qfunc).bind(np.zeros(input_shape), **{k: None for k in spec.weight_shapes})
    except TypeError as exc:
        raise QdynInputError(f"{where}: qfunc(inputs, {', '.join(f'{k}=' for k in spec.weight_shapes)}) does not "
                             f"match its signature {inspect.signature(qfunc)} ({exc})") from None
    weights = {k: np.zeros(s) for k, s in spec.weight_shapes.items()}
    try:
        tape = qml.tape.make_qscript(qfunc)(np.zeros(input_shape), **weights)
    except Exception as exc:  # the user's code failed on inputs of the declared shapes
        raise QdynInputError(f"{where}: calling it with inputs {list(input_shape)} and weights "
                             f"{ {k: list(s) for k, s in spec.weight_shapes.items()} } failed: "
                             f"{type(exc).__name__}: {exc}") from None
    if tape.measurements:
        raise QdynInputError(f"{where}: the qfunc must only apply gates; qdyn measures the observable "
                             f"({spec.observable!r}), so remove its return of measurements")
    used = {int(w) if isinstance(w, (int, np.integer)) else w for w in tape.wires}
    stray = used - set(range(spec.wires))
    if stray:
        raise QdynInputError(f"{where}: acts on wires {sorted(stray, key=str)} but declares wires: {spec.wires} "
                             f"(0..{spec.wires - 1})")


def init_weights(key, spec: UserCircuit, dtype) -> dict:
    """Initial weights ``{name: N(mean, std²) [shape]}`` of a user circuit."""
    names = sorted(spec.weight_shapes)
    keys = jax.random.split(key, max(len(names), 1))
    return {name: spec.weight_init(name).mean
            + spec.weight_init(name).std * jax.random.normal(k, tuple(spec.weight_shapes[name]), dtype)
            for name, k in zip(names, keys)}

