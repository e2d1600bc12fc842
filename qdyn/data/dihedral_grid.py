"""Configurations spread over a plane of two (or more) dihedral angles: a Ramachandran grid.

Thermal MD started at one conformer stays in its basin, so a model trained on it has never
seen the rest of the torsional plane, and a metadynamics bias then drives it there
(benchmarks/ramachandran.py). :func:`dihedral_grid_frames` instead visits every cell of a
grid over the dihedrals: for each cell a target inside it (jittered, seeded), the dihedrals
turned rigidly to the target, a relaxation under a harmonic dihedral restraint and a short
restrained Langevin MD on the labeller's own potential (an umbrella window), from which the
frames are taken. The restraint only places the frames; they are labelled afterwards without
it, like every other recipe's frames.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from .samplers import _radius, _rotvec_to_matrix

__all__ = ["dihedral", "dihedral_gradient", "set_dihedral", "grid_targets", "restrained_minimum",
           "dihedral_grid_frames"]


def dihedral(R, idx: Sequence[int]) -> float:
    """Dihedral i-j-k-l [rad] in (-π, π], the convention of :func:`qdyn.sampling.cv.dihedral`."""
    i, j, k, l = idx
    b1, b2, b3 = R[j] - R[i], R[k] - R[j], R[l] - R[k]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    return float(np.arctan2(np.linalg.norm(b2) * b1 @ n2, n1 @ n2))


def dihedral_gradient(R, idx: Sequence[int]) -> np.ndarray:
    """dφ/dR [N, 3] of :func:`dihedral` (Blondel & Karplus, J. Comput. Chem. 17, 1132 (1996))."""
    i, j, k, l = idx
    F, G, H = R[i] - R[j], R[j] - R[k], R[l] - R[k]
    A, B = np.cross(F, G), np.cross(H, G)
    g, a2, b2 = np.linalg.norm(G), A @ A, B @ B
    out = np.zeros_like(R)
    out[i] = -g / a2 * A
    out[l] = g / b2 * B
    out[j] = g / a2 * A + (F @ G) / (a2 * g) * A - (H @ G) / (b2 * g) * B
    out[k] = -g / b2 * B - (F @ G) / (a2 * g) * A + (H @ G) / (b2 * g) * B
    return out


def _moving_side(Z, R, j: int, k: int) -> np.ndarray:
    """Atoms on k's side of the bond j-k: the covalent-bond graph (as :func:`fragments` builds
    it) with j-k cut, searched from k."""
    radii = np.array([_radius(z) for z in Z])
    d = np.linalg.norm(R[:, None] - R[None], axis=-1)
    bonded = (d < 1.2 * (radii[:, None] + radii[None])) & ~np.eye(len(Z), dtype=bool)
    bonded[j, k] = bonded[k, j] = False
    seen, stack = {k}, [k]
    while stack:
        for b in np.flatnonzero(bonded[stack.pop()]):
            if int(b) not in seen:
                seen.add(int(b))
                stack.append(int(b))
    if j in seen:
        raise ValueError(f"bond {j}-{k} is in a ring: its dihedral cannot be turned rigidly")
    return np.array(sorted(seen))


def set_dihedral(Z, R, idx: Sequence[int], target_rad: float) -> np.ndarray:
    """R with dihedral i-j-k-l set to ``target_rad`` by turning k's side of the j-k bond rigidly."""
    R = np.asarray(R, dtype=float).copy()
    _, j, k, _ = idx
    move = _moving_side(Z, R, j, k)
    turn = (target_rad - dihedral(R, idx) + np.pi) % (2 * np.pi) - np.pi
    u = (R[k] - R[j]) / np.linalg.norm(R[k] - R[j])
    rot = _rotvec_to_matrix(turn * u)
    R[move] = (R[move] - R[k]) @ rot.T + R[k]
    return R


def grid_targets(n: Sequence[int], *, seed: int, jitter: bool = True) -> np.ndarray:
    """One target per cell of an n[0] × n[1] × ... grid over (-π, π]^d [cells, d] rad: the cell's
    centre, or (``jitter``) a uniform point inside it, so the union of cells covers the plane."""
    rng = np.random.default_rng(seed)
    widths = [2 * np.pi / m for m in n]
    cells = np.array(list(itertools.product(*(range(m) for m in n))), dtype=float)
    offset = rng.uniform(0.0, 1.0, cells.shape) if jitter else np.full(cells.shape, 0.5)
    return -np.pi + (cells + offset) * np.asarray(widths)


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


class _Restrained:
    """The labeller's energy plus k/2 Σ (φ - φ0)² over the dihedrals (wrapped differences)."""

    def __init__(self, labeler, dihedrals, k_eV_per_rad2: float):
        self.labeler, self.dihedrals, self.k = labeler, [list(d) for d in dihedrals], k_eV_per_rad2
        self.targets = None

    def __call__(self, Z, R):
        res = self.labeler.label(Z, R)
        if not res.converged:
            raise RuntimeError(f"labeller failed during dihedral-grid sampling: {res.status}")
        e, f = res.energy, np.array(res.forces)
        for idx, t in zip(self.dihedrals, self.targets):
            dev = _wrap(dihedral(R, idx) - t)
            e += 0.5 * self.k * dev**2
            f -= self.k * dev * dihedral_gradient(R, idx)
        return e, f


def _ase_atoms(Z, R, potential):
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes

    class _Calc(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            e, f = potential(self.atoms.numbers, self.atoms.positions)
            self.results = {"energy": e, "forces": f}

    atoms = Atoms(numbers=np.asarray(Z), positions=np.asarray(R, dtype=float))
    atoms.calc = _Calc()
    return atoms


def _restrained_atoms(potential, Z, R0, dihedrals, target):
    """ASE atoms at R0 with the dihedrals turned to ``target`` [rad], restrained there."""
    R = np.asarray(R0, dtype=float)
    for idx, t in zip(dihedrals, target):
        R = set_dihedral(Z, R, idx, t)
    potential.targets = np.asarray(target, dtype=float)
    return _ase_atoms(Z, R, potential)


def restrained_minimum(labeler, Z, R0, *, dihedrals, target_rad, k_eV_per_rad2: float = 20.0, fmax: float = 0.01,
                       opt_steps: int = 500):
    """The labeller's minimum with the dihedrals held at ``target_rad`` (a relaxed scan point):
    (R [N, 3] Å, its energy without the restraint [eV], the dihedrals reached [rad]).

    A stiff restraint (20 eV/rad²) stands in for a constraint: it leaves the dihedrals within
    about |torsional force| / k of the target, which the third value reports."""
    from ase.optimize import BFGS

    Z = np.asarray(Z)
    atoms = _restrained_atoms(_Restrained(labeler, dihedrals, k_eV_per_rad2), Z, R0, dihedrals, target_rad)
    BFGS(atoms, logfile=None, maxstep=0.1).run(fmax=fmax, steps=opt_steps)
    R = atoms.get_positions()
    return R, float(labeler.label(Z, R).energy), np.array([dihedral(R, idx) for idx in dihedrals])


def dihedral_grid_frames(labeler, Z, R0, *, dihedrals, n: Sequence[int], seed: int, jitter: bool = True,
                         k_eV_per_rad2: float = 2.0, fmax: float = 0.05, opt_steps: int = 200,
                         temperatures: Sequence[float] = (300.0,), dt: float = 0.5, friction: float = 0.01,
                         equilibration_steps: int = 100, interval: int = 60, frames_per_point: int = 2,
                         log=lambda s: None) -> np.ndarray:
    """Frames over a grid of dihedral targets (module docstring).

    Args:
        labeler: anything with ``label(Z, R) -> FrameResult`` (eV, Å), e.g. GFN2-xTB.
        Z: atomic numbers, int [N].
        R0: float64 [N, 3] Å, one bonded molecule.
        dihedrals: atom quadruples (i, j, k, l); each is turned about its j-k bond.
        n: cells per dihedral (360° / n wide).
        seed: seeds the jitter, the velocities and the Langevin noise (cell c uses seed + c).
        jitter: a uniform random target inside each cell (else the cell's centre).
        k_eV_per_rad2: restraint stiffness (2 eV/rad² holds a dihedral to ~6° at 300 K).
        fmax: force limit of the restrained BFGS relaxation [eV/Å].
        opt_steps: step limit of that relaxation.
        temperatures: Langevin targets [K], cycled over the cells.
        dt: restrained-MD time step [fs].
        friction: Langevin friction [1/fs].
        equilibration_steps: restrained-MD steps before the first frame.
        interval: restrained-MD steps between frames.
        frames_per_point: frames from each cell's run.
        log: called with a progress line per cell.

    Returns:
        float64 [cells × frames_per_point, N, 3] Å, cells in grid order.
    """
    from ase import units as ase_units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.optimize import BFGS

    Z, R0 = np.asarray(Z), np.asarray(R0, dtype=float)
    targets = grid_targets(n, seed=seed, jitter=jitter)
    potential = _Restrained(labeler, dihedrals, k_eV_per_rad2)
    frames = []
    for c, target in enumerate(targets):
        atoms = _restrained_atoms(potential, Z, R0, dihedrals, target)
        BFGS(atoms, logfile=None, maxstep=0.1).run(fmax=fmax, steps=opt_steps)
        T = float(temperatures[c % len(temperatures)])
        rng = np.random.default_rng(seed + c)
        MaxwellBoltzmannDistribution(atoms, temperature_K=T, rng=rng)
        md = Langevin(atoms, timestep=dt * ase_units.fs, temperature_K=T, friction=friction / ase_units.fs, rng=rng)
        md.run(equilibration_steps)
        for _ in range(frames_per_point):
            md.run(interval)
            frames.append(atoms.get_positions().copy())
        if (c + 1) % 12 == 0:
            log(f"dihedral grid: {c + 1}/{len(targets)} cells")
    return np.asarray(frames)
