"""Example user circuits (:mod:`qdyn.quantum.user`): PennyLane quantum functions a config can
name by import path, e.g. ``circuit: {qfunc: "qdyn.quantum.examples:water_exchange", ...}``.

They are what a user would write: gates only, weights as keyword arguments with the shapes
the config declares; qdyn adds the measurement.

* :func:`water_exchange`: an invariant H2O circuit (one qubit per O–H vector, singlet start,
  SU(2) encodings with one strength per layer shared by both H, Heisenberg exchange).
* :func:`water_exchange_untied`: the same with a strength per qubit — still rotation
  invariant, but exchanging the two H atoms no longer maps the circuit onto itself: a
  deliberately broken permutation symmetry that :func:`qdyn.testing.check_circuit` reports.
* :func:`cartesian_angles`: raw x, y, z components as rotation angles — not rotation invariant.
* :func:`angle_layers`: a per-atom branch for the hybrid: the feature angles as ``RY`` (through
  ``qml.AngleEmbedding``) followed by ``qml.StronglyEntanglingLayers``.
"""

from __future__ import annotations

from ._pennylane import qml
from .circuit import exchange_native, singlet, su2_encoding_native


def water_exchange(vectors, alpha, J):
    """H2O: ``vectors`` [2, 3] Å (the two O–H vectors), ``alpha`` [L] encoding strengths per
    layer, ``J`` [L] exchange couplings; wires: 2, observable: heisenberg."""
    singlet([0, 1])
    for d in range(alpha.shape[0]):
        for q in (0, 1):
            su2_encoding_native(vectors[q], alpha[d], q)
        exchange_native(J[d], [0, 1])


def water_exchange_untied(vectors, alpha, J):
    """Like :func:`water_exchange`, but ``alpha`` [L, 2] gives each O–H vector its own
    strength: exchanging the H atoms changes the energy (permutation symmetry broken)."""
    singlet([0, 1])
    for d in range(alpha.shape[0]):
        for q in (0, 1):
            su2_encoding_native(vectors[q], alpha[d, q], q)
        exchange_native(J[d], [0, 1])


def cartesian_angles(vectors, W):
    """Each vector's Cartesian components as RX, RY, RZ angles on its own wire, then trainable
    ``Rot`` gates and a CNOT: ``W`` [L, n_vectors, 3]. Not rotation invariant (a control)."""
    n = vectors.shape[0]
    for d in range(W.shape[0]):
        for q in range(n):
            qml.RX(vectors[q, 0], wires=q)
            qml.RY(vectors[q, 1], wires=q)
            qml.RZ(vectors[q, 2], wires=q)
            qml.Rot(*W[d, q], wires=q)
        for q in range(n - 1):
            qml.CNOT(wires=[q, q + 1])


def angle_layers(angles, weights):
    """Hybrid per-atom branch: ``angles`` [n_wires] (bounded feature angles) as ``RY``, then
    ``qml.StronglyEntanglingLayers`` with ``weights`` of shape
    ``qml.StronglyEntanglingLayers.shape(n_layers, n_wires)``."""
    wires = range(angles.shape[0])
    qml.AngleEmbedding(angles, wires=wires, rotation="Y")
    qml.StronglyEntanglingLayers(weights, wires=wires)
