"""Compiled programs shared by every equal program in the process.

``jax.jit`` caches executables per Python function object: two ``train()`` calls with the same
config build fresh closures (loss, optimiser, step), so the second compiles exactly the
program the first already has — a resumed run in a notebook, a deep-ensemble member trained
after another, every round of an active-learning loop whose shapes did not change. XLA's
compile is most of a small run's time (several seconds per program with forces in the loss;
the step itself takes milliseconds).

:func:`shared_jit` is ``jax.jit`` whose executables are looked up by the *lowered program*:
on the first call with a new signature (tree structure, shapes, dtypes, weak types) it traces
and lowers as ``jax.jit`` does, then hashes the StableHLO text (every constant included:
MLIR prints dense constants in full) and compiles only if no equal program was compiled
before. Equal text means the same computation, so a reused executable returns what a fresh
compile would. In memory only: nothing is written to disk (JAX's persistent cache loads
executables through XLA's AOT loader, which the test suite avoids; see tests/conftest.py).

Single-device programs only: a sharded program's executable also depends on its device
assignment, which the text does not show (the trainer uses plain ``jax.jit`` with a mesh).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

import jax
import numpy as np

__all__ = ["shared_jit", "shared_executable", "SharedJit"]

#: executables kept (least recently used dropped): each holds its compiled code in memory
MAX_PROGRAMS = 64
_EXECUTABLES: "OrderedDict[str, jax.stages.Compiled]" = OrderedDict()
_STATS = {"compiled": 0, "reused": 0}


def _leaf_signature(x) -> tuple:
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return (tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)))
    return (type(x).__name__,)  # a Python scalar: weakly typed, its value is not baked in


def _signature(args) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple(_leaf_signature(x) for x in leaves))


def _program_key(lowered: jax.stages.Lowered) -> str:
    text = lowered.as_text(debug_info=False)
    return hashlib.sha256(text.encode()).hexdigest()


def shared_executable(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """``lowered.compile()``, or the executable of an equal program compiled before in this
    process (single-device programs only; see the module doc)."""
    key = _program_key(lowered)
    exe = _EXECUTABLES.get(key)
    if exe is None:
        exe = lowered.compile()
        _STATS["compiled"] += 1
        _EXECUTABLES[key] = exe
        if len(_EXECUTABLES) > MAX_PROGRAMS:
            _EXECUTABLES.popitem(last=False)
    else:
        _STATS["reused"] += 1
    _EXECUTABLES.move_to_end(key)
    return exe


class SharedJit:
    """A jitted function whose executables come from the process-wide table (see module doc).

    Positional arguments only (as every caller in qdyn passes them)."""

    def __init__(self, fn: Callable):
        self._jitted = jax.jit(fn)
        self._by_signature: dict = {}

    def __call__(self, *args):
        sig = _signature(args)
        exe = self._by_signature.get(sig)
        if exe is None:
            exe = shared_executable(self._jitted.lower(*args))
            self._by_signature[sig] = exe
        return exe(*args)

    def compilations(self) -> int:
        """Signatures this function has been called with (each one program)."""
        return len(self._by_signature)


def shared_jit(fn: Callable) -> SharedJit:
    """``jax.jit(fn)`` sharing executables with every equal program in this process.

    >>> import jax.numpy as jnp
    >>> f, g = shared_jit(lambda x: jnp.sin(x) * 2), shared_jit(lambda x: jnp.sin(x) * 2)
    >>> before = stats()["reused"]
    >>> float(f(jnp.float32(0.5))) == float(g(jnp.float32(0.5)))  # g runs f's executable
    True
    >>> stats()["reused"] - before
    1
    """
    return SharedJit(fn)


def stats() -> dict:
    """Programs compiled and reused so far in this process."""
    return dict(_STATS)
