"""PennyLane, imported the first time qdyn uses it.

Why: ``import pennylane`` takes 3–5 s (its transforms pull in scipy.stats and matplotlib),
and most qdyn processes never touch it: the circuits run as pure-JAX state vectors, and
PennyLane is needed only for QNodes (the ``pennylane`` backend, devices, shots and noise,
users' own circuits, exports and the equality tests against PennyLane). ``qml`` here stands
for the module and imports it on the first attribute lookup, so ``qml.Rot(...)`` in a circuit
body reads as usual.
"""

from __future__ import annotations

import importlib


class _PennyLane:
    """``pennylane``, imported on first attribute access."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module("pennylane"), name)

    def __repr__(self) -> str:
        return "<pennylane, imported on first use>"


qml = _PennyLane()
