"""One reader for the trajectories ``qdyn md`` writes, and their MDAnalysis view.

qdyn writes H5MD (``trajectory.h5``, all stored replicas) and extended XYZ
(``trajectory.xyz``, one replica per file). Both carry time [fs], positions [Å] and
velocities [Å/fs]; periodic runs carry the cell. MDAnalysis reads the H5MD file directly
(``mda.Universe("trajectory.xyz", "trajectory.h5", format="H5MD")``, the xyz file as
topology); :func:`to_mdanalysis` builds the same Universe from memory for any source.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from ..validation import QdynInputError


class Trajectory(NamedTuple):
    """Frames of one replica (host NumPy, float64).

    Attributes:
        time_fs: [F] fs.
        positions: [F, n, 3] Å (as written: wrapped into the cell when periodic).
        species: [n] atomic numbers.
        box: [3, 3] Å lattice vectors as columns (fixed cell), [F, 3, 3] (NPT) or None.
        velocities: [F, n, 3] Å/fs, or None when the file has none.
    """

    time_fs: np.ndarray
    positions: np.ndarray
    species: np.ndarray
    box: Optional[np.ndarray]
    velocities: Optional[np.ndarray] = None

    @property
    def dt_frame_fs(self) -> float:
        """Time between frames [fs] (the files are written at a fixed stride)."""
        if len(self.time_fs) < 2:
            raise QdynInputError("the trajectory has fewer than two frames")
        return float(np.median(np.diff(self.time_fs)))

    def cell_at(self, frame: int) -> Optional[np.ndarray]:
        """[3, 3] Å cell of one frame (None in free space)."""
        if self.box is None:
            return None
        return self.box if self.box.ndim == 2 else self.box[frame]


def load_trajectory(path, *, replica: int = 0) -> Trajectory:
    """Read a qdyn trajectory: H5MD (``.h5``/``.h5md``, ``replica`` selects the particle
    group) or extended XYZ (``.xyz``/``.extxyz``, written with ``time=`` per frame).

    Raises:
        QdynInputError: a missing file, an unknown suffix, a replica not stored, no frames.
    """
    path = Path(path)
    if not path.exists():
        raise QdynInputError(f"{path}: no such trajectory file")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".h5md", ".hdf5"):
        traj = _load_h5md(path, replica)
    elif suffix in (".xyz", ".extxyz"):
        traj = _load_extxyz(path)
    else:
        raise QdynInputError(f"{path}: unknown trajectory format {suffix!r}; qdyn md writes .h5 (H5MD) and .xyz")
    if len(traj.time_fs) == 0:
        raise QdynInputError(f"{path}: the trajectory holds no frames")
    return traj


def _load_h5md(path: Path, replica: int) -> Trajectory:
    import h5py

    from ..md.trajectory import read_h5md

    try:
        with h5py.File(path, "r") as f:
            stored = sorted(int(k.split("_")[-1]) for k in f.get("particles", {}).keys())
    except OSError as e:
        raise QdynInputError(f"{path}: cannot be opened as HDF5 ({e})") from None
    if replica not in stored:
        raise QdynInputError(f"{path}: replica {replica} is not stored; stored replicas: {stored}")
    h = read_h5md(path, replica=replica)
    box = None if h["box"] is None else np.asarray(h["box"], float)
    return Trajectory(np.asarray(h["time"], float), np.asarray(h["position"], float), np.asarray(h["species"]),
                      box, np.asarray(h["velocity"], float))


def _load_extxyz(path: Path) -> Trajectory:
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format="extxyz")
    except Exception as e:  # ASE raises many types for a malformed file
        raise QdynInputError(f"{path}: not a readable extended XYZ trajectory ({type(e).__name__}: {e})") from None
    if not frames:
        raise QdynInputError(f"{path}: the trajectory holds no frames")
    if any("time" not in a.info for a in frames):
        raise QdynInputError(f"{path}: frames without time= (not written by qdyn md); use the H5MD file")
    periodic = bool(frames[0].pbc.all())
    cells = np.stack([np.asarray(a.cell).T for a in frames]) if periodic else None
    box = None if cells is None else (cells[0] if np.allclose(cells, cells[0]) else cells)
    vel = np.stack([a.arrays["vel"] for a in frames]) if "vel" in frames[0].arrays else None
    return Trajectory(np.array([a.info["time"] for a in frames], float), np.stack([a.positions for a in frames]),
                      frames[0].numbers.copy(), box, vel)


def to_mdanalysis(traj: Trajectory):
    """An MDAnalysis ``Universe`` holding the frames in memory (Å; MDAnalysis's time in ps),
    with element names, types and masses, so its analyses run on qdyn output.

    Raises:
        QdynInputError: MDAnalysis is not installed (``pip install 'qdyn-mlff[analysis]'``).
    """
    mda = require("MDAnalysis", "MDAnalysis")
    from MDAnalysis.coordinates.memory import MemoryReader

    from .. import elements

    n = len(traj.species)
    u = mda.Universe.empty(n, trajectory=True)
    names = np.array([elements.symbol(int(z)) for z in traj.species], dtype=object)
    u.add_TopologyAttr("name", names)
    u.add_TopologyAttr("type", names)
    u.add_TopologyAttr("element", names)
    u.add_TopologyAttr("masses", np.array([elements.mass(int(z)) for z in traj.species]))
    dims = None
    if traj.box is not None:
        cells = np.broadcast_to(traj.box, (len(traj.time_fs), 3, 3)) if traj.box.ndim == 2 else traj.box
        dims = np.stack([_mda_dimensions(c) for c in cells]).astype(np.float32)
    u.load_new(traj.positions.astype(np.float32), format=MemoryReader, dimensions=dims,
               dt=traj.dt_frame_fs / 1e3 if len(traj.time_fs) > 1 else 1.0)
    return u


def _mda_dimensions(cell) -> np.ndarray:
    """[a, b, c, α, β, γ] (Å, degrees) of a cell with lattice vectors as columns."""
    v = np.asarray(cell, float).T
    lengths = np.linalg.norm(v, axis=1)

    def angle(i, j):
        return np.degrees(np.arccos(np.dot(v[i], v[j]) / (lengths[i] * lengths[j])))

    return np.array([*lengths, angle(1, 2), angle(0, 2), angle(0, 1)])


def require(module: str, package: str):
    """Import an optional analysis dependency, or one clear line on how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise QdynInputError(f"this analysis needs {package}: pip install 'qdyn-mlff[analysis]' "
                             f"(or pip install {package})") from None
