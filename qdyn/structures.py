"""Reference geometries [Å] for examples and tests (no network, no files)."""

from __future__ import annotations

import numpy as np

from .system import System


def water(r_oh: float = 0.9572, angle_deg: float = 104.52):
    """H2O with O at the origin, in the xy plane: (R [3, 3], System)."""
    a = np.deg2rad(angle_deg)
    R = np.array([[0.0, 0.0, 0.0], [r_oh, 0.0, 0.0], [r_oh * np.cos(a), r_oh * np.sin(a), 0.0]])
    return R, System.create(["O", "H", "H"])


def lih(r: float = 1.595):
    """LiH along z: (R [2, 3], System)."""
    return np.array([[0.0, 0.0, 0.0], [0.0, 0.0, r]]), System.create(["Li", "H"])


def water_dimer():
    """The Cs water dimer near its minimum (O–O ≈ 2.91 Å): (R [6, 3], System).

    Atom order O H H O H H; atom 2 is the donated hydrogen.
    """
    R = np.array(
        [
            [-1.551007, -0.114520, 0.000000],
            [-1.934259, 0.762503, 0.000000],
            [-0.599677, 0.040712, 0.000000],
            [1.350625, 0.111469, 0.000000],
            [1.680398, -0.373741, -0.758561],
            [1.680398, -0.373741, 0.758561],
        ]
    )
    return R, System.create(["O", "H", "H", "O", "H", "H"])


def rattle(R, seed: int, scale: float = 0.05):
    """Gaussian displacement of every atom (breaks accidental symmetries of the geometry)."""
    return np.asarray(R) + scale * np.random.default_rng(seed).normal(size=np.shape(R))
