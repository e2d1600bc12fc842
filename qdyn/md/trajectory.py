"""Streaming H5MD trajectories (the extended XYZ one is :class:`qdyn.data.extxyz.ExtxyzWriter`).

Trajectories grow while the run goes, so they are appended to (not replaced atomically);
the writer records how many frames it holds and can be cut back to a checkpoint's frame
count on restart, so a resumed run never duplicates or loses frames. Units: Å, Å/fs, eV,
fs, K.

* H5MD 1.1 (de Buyl et al., Comput. Phys. Commun. 185, 1546 (2014)): one particle group per
  stored replica with time-dependent ``position`` and ``velocity``, ``species`` and ``box``;
  ``observables/`` holds per-frame energies and temperatures. Readable by OVITO, MDAnalysis
  and h5py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import __version__
from ..validation import QdynInputError


class H5MDWriter:
    """Append frames of several replicas to one H5MD file.

    Args:
        path: file; created (or cut back to ``keep_frames`` frames when resuming).
        species: [n] atomic numbers.
        box: the periodic cell, [3, 3] Å (columns) or [3] sides, None in free space.
        replicas: the replica indices stored (one particle group each).
        keep_frames: frames to keep from an existing file (restart), 0 to start fresh.
        variable_cell: the cell changes (NPT): ``box/edges`` becomes a time series.
    """

    def __init__(self, path, species, box, *, replicas: Sequence[int], keep_frames: int = 0,
                 variable_cell: bool = False):
        import h5py

        self.path = Path(path)
        self.replicas = list(replicas)
        self.variable_cell = bool(variable_cell)
        box = _as_cell(box)
        n = len(species)
        # a fixed periodic cell is written with every frame (edge vectors as rows, [3] if diagonal)
        self._fixed_edges = None
        if box is not None and not self.variable_cell:
            self._fixed_edges = np.diag(box).copy() if _is_diag(box) else box.T.copy()
        if keep_frames:
            if not self.path.exists():
                raise QdynInputError(f"{self.path}: missing; the checkpoint continues a trajectory of {keep_frames} "
                                     "frames")
            try:
                self.f = h5py.File(self.path, "a")
            except OSError as e:
                raise QdynInputError(f"{self.path}: cannot be opened as HDF5 (truncated or corrupt?): {e}") from None
            if self._fixed_edges is not None and not self._edges_are_series():
                self._fixed_edges = None  # an older file: its fixed cell is one dataset
            series = [self.f[name][ds] for name in self._series_names() for ds in ("step", "time", "value")]
            short = [d.name for d in series if d.shape[0] < keep_frames]
            if short:  # checked for all before any is cut
                self.f.close()
                raise QdynInputError(f"{self.path}: {short[0]} holds fewer than the {keep_frames} frames the "
                                     "checkpoint expects (truncated?)")
            for d in series:
                d.resize(keep_frames, axis=0)
            self.n_frames = keep_frames
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = f = h5py.File(self.path, "w")
        h = f.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h.create_group("author").attrs["name"] = "qdyn user"
        c = h.create_group("creator")
        c.attrs["name"] = "qdyn"
        c.attrs["version"] = __version__
        for r in self.replicas:
            g = f.create_group(f"particles/replica_{r:04d}")
            box_g = g.create_group("box")
            box_g.attrs["dimension"] = 3
            if box is None:
                box_g.attrs["boundary"] = np.array([b"none"] * 3)
                # H5MD requires edges only for periodic boundaries
            else:
                box_g.attrs["boundary"] = np.array([b"periodic"] * 3)
                # H5MD stores the edge vectors as rows: qdyn's columns, transposed. A fixed cell
                # is a time series too (H5MD allows a plain dataset, but MDAnalysis reads only
                # series); the constant cell is also kept as an attribute for qdyn's reader.
                box_g.attrs["qdyn_variable_cell"] = self.variable_cell
                if not self.variable_cell:
                    box_g.attrs["qdyn_cell"] = box
                shape = (3, 3) if self._fixed_edges is None else self._fixed_edges.shape
                self._series(box_g.create_group("edges"), shape, "Angstrom")
            g.create_dataset("species", data=np.asarray(species, np.int32))
            # unit strings as MDAnalysis's H5MD reader spells them (it refuses "angstrom fs-1")
            for name, unit in (("position", "Angstrom"), ("velocity", "Angstrom fs-1")):
                self._series(g.create_group(name), (n, 3), unit)
        for name, unit in (("potential_energy", "eV"), ("kinetic_energy", "eV"), ("temperature", "K")):
            self._series(f.create_group(f"observables/{name}"), (len(self.replicas),), unit)
        self.n_frames = 0

    @staticmethod
    def _series(g, shape, unit):
        g.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
        t = g.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(256,))
        t.attrs["unit"] = "fs"
        v = g.create_dataset("value", shape=(0, *shape), maxshape=(None, *shape), dtype=np.float64,
                             chunks=(16, *shape))
        v.attrs["unit"] = unit

    def _edges_are_series(self) -> bool:
        import h5py

        box = self.f[f"particles/replica_{self.replicas[0]:04d}/box"]
        return "edges" in box and isinstance(box["edges"], h5py.Group)

    def _series_names(self):
        qs = ("position", "velocity", "box/edges") if self._edges_are_series() else ("position", "velocity")
        names = [f"particles/replica_{r:04d}/{q}" for r in self.replicas for q in qs]
        return names + [f"observables/{q}" for q in ("potential_energy", "kinetic_energy", "temperature")]

    def append(self, *, step, time_fs, R, V, potential, kinetic, temperature, cell=None):
        """Append frames: step [F], time [F] fs, R/V [F, S, n, 3] (S stored replicas, Å and
        Å/fs), potential/kinetic [F, S] eV, temperature [F, S] K, cell [F, S, 3, 3] Å
        (columns; variable-cell files only)."""
        if self.variable_cell and cell is None:
            raise ValueError("this H5MD file has a variable cell: append needs cell=")
        F = len(step)
        new = self.n_frames + F

        def put(g, value):
            for ds, data in (("step", step), ("time", time_fs), ("value", value)):
                d = g[ds]
                d.resize(new, axis=0)
                d[self.n_frames:new] = data

        for s, r in enumerate(self.replicas):
            put(self.f[f"particles/replica_{r:04d}/position"], R[:, s])
            put(self.f[f"particles/replica_{r:04d}/velocity"], V[:, s])
            if self.variable_cell:
                put(self.f[f"particles/replica_{r:04d}/box/edges"], np.swapaxes(np.asarray(cell)[:, s], -1, -2))
            elif self._fixed_edges is not None:
                put(self.f[f"particles/replica_{r:04d}/box/edges"],
                    np.broadcast_to(self._fixed_edges, (F, *self._fixed_edges.shape)))
        put(self.f["observables/potential_energy"], potential)
        put(self.f["observables/kinetic_energy"], kinetic)
        put(self.f["observables/temperature"], temperature)
        self.f.flush()
        self.n_frames = new

    def close(self):
        self.f.close()


def read_h5md(path, *, replica: int = 0) -> dict:
    """Read one replica back: ``{"species", "time", "position", "velocity", "box"}``."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f[f"particles/replica_{replica:04d}"]
        box = None
        if "qdyn_cell" in g["box"].attrs:  # a fixed cell (stored as a series for MDAnalysis)
            box = np.asarray(g["box"].attrs["qdyn_cell"], float)
        elif "edges" in g["box"]:
            e = g["box/edges"]
            # back to qdyn's columns; a time series (NPT) gives one cell per frame
            box = np.swapaxes(e["value"][()], -1, -2) if isinstance(e, h5py.Group) else e[()]
            if box.ndim == 2:
                box = box.T
            elif box.ndim == 1:
                box = np.diag(box)
        return {"species": g["species"][()], "time": g["position/time"][()], "position": g["position/value"][()],
                "velocity": g["velocity/value"][()], "box": box}


def _is_diag(box) -> bool:
    return bool(np.allclose(box, np.diag(np.diag(box))))


def _as_cell(box) -> Optional[np.ndarray]:
    """[3, 3] Å (columns = lattice vectors) from [3] sides or [3, 3], None stays None."""
    if box is None:
        return None
    b = np.asarray(box, float)
    if b.shape == (3,):
        return np.diag(b)
    if b.shape != (3, 3):
        raise ValueError(f"cell must be [3] sides or [3, 3] lattice vectors (columns), got shape {b.shape}")
    return b
