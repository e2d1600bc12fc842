"""Reference structures [Å]: molecules and water lattices for examples and tests (no network,
no files), the reference molecule of a model, and one frame of a structure file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .system import System
from .validation import QdynInputError


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


def water_lattice(n_side: int = 2, *, spacing: float = 4.6, seed: int = 0, wrap: bool = False):
    """(R [3 n_side³, 3] Å, System) of randomly oriented, rattled waters on a cubic lattice in
    a periodic cube of side ``spacing · n_side`` (a small liquid-like test box).

    Args:
        n_side: molecules per box edge.
        spacing: lattice spacing [Å].
        seed: NumPy seed for the orientations (proper rotations) and the 0.2 Å rattle.
        wrap: fold the positions into the box (molecules may then straddle its faces).
    """
    R0, _ = water()
    rng = np.random.default_rng(seed)
    mols = []
    for i in range(n_side):
        for j in range(n_side):
            for k in range(n_side):
                Q, r = np.linalg.qr(rng.normal(size=(3, 3)))
                Q = Q * np.sign(np.diag(r))
                if np.linalg.det(Q) < 0:  # proper rotations only; tests apply reflections themselves
                    Q[:, 0] = -Q[:, 0]
                mols.append(R0 @ Q.T + spacing * np.array([i, j, k]) + 0.2 * rng.normal(size=3))
    side = spacing * n_side
    R = np.concatenate(mols)
    if wrap:
        R = np.mod(R, side)
    return R, System.create(["O", "H", "H"] * n_side**3, box=np.eye(3) * side)


def reference_structure(model):
    """(R [n, 3] Å, System) of the molecule a model was built for."""
    template = model.config.get("template")
    by_template = {"H2O": water, "LiH": lih, "water_dimer": water_dimer}
    if template in by_template:
        return by_template[template]()
    if tuple(sorted(model.species)) == (1, 8):
        return water()
    if tuple(sorted(model.species)) == (1, 3):
        return lih()
    raise QdynInputError(f"no reference molecule for {model.name} (species {model.species}); pass a structure")


# Named structures: what `--structure NAME` means in every command that takes one.
PRESETS = {"water": water, "lih": lih, "water_dimer": water_dimer}


def load_structure(path, *, frame: int = 0, length_unit: Optional[str] = None):
    """(R [n, 3] Å, System) of one frame of any file :func:`qdyn.data.read` reads, or of a
    preset (:data:`PRESETS`: ``water``, ``lih``, ``water_dimer``) when no such file exists.

    Args:
        path: extxyz, ASE db/traj, qdyn npz, MD17 npz, ... file, ``shipped:NAME``, or a preset.
        frame: which frame.
        length_unit: the file's length unit where the format does not record it.

    Raises:
        QdynInputError: unreadable file or a frame index out of range.
    """
    from . import data

    if str(path) in PRESETS and not Path(path).exists():
        return PRESETS[str(path)]()
    ds = data.read(path, length_unit=length_unit)
    if not -ds.n_frames <= frame < ds.n_frames:
        raise QdynInputError(f"{path}: frame {frame} requested, the file has {ds.n_frames} frames")
    return ds.to_system(frame % ds.n_frames)


def water_box(n_per_side: int, *, spacing: float = 3.1, seed: int = 0):
    """(R [3 m, 3] Å, species [3 m], box side [3] Å) of m = n_per_side³ randomly oriented
    waters on a cubic lattice (for neighbour-list tests and examples)."""
    rng = np.random.default_rng(seed)
    base = np.round(water()[0], 4)  # the monomer to 4 decimals: [-0.2400, 0.9266] for the second H
    R = []
    for i in range(n_per_side):
        for j in range(n_per_side):
            for k in range(n_per_side):
                q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
                R.append(base @ q.T + spacing * (np.array([i, j, k]) + 0.5))
    R = np.concatenate(R)
    species = np.tile([8, 1, 1], n_per_side**3)
    return R, species, np.full(3, spacing * n_per_side)
