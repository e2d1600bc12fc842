"""The :class:`Dataset`: labelled configurations in qdyn units (eV, Å).

Configurations with different atom counts share one array shape by **trailing padding**:
``Z`` is 0 and ``R``/``F`` are 0 for padding atoms, and ``mask = Z > 0``. Models place
padding atoms far away with :func:`qdyn.system.pad_positions`; the dataset stores zeros so
files stay compact and exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import elements
from ..validation import QdynInputError

__all__ = ["Dataset", "assert_datasets_equal", "split_indices", "read_index_file", "write_index_file"]

# Arrays with a leading frame axis, in the order they are documented and written.
ARRAY_FIELDS = ("R", "Z", "E", "F", "cell", "pbc", "E_states", "F_states")


@dataclass(eq=False)  # arrays have no single truth value; compare with assert_datasets_equal
class Dataset:
    """Labelled configurations.

    Attributes:
        R: float64 [n, A, 3] positions, Å (0 for padding atoms).
        Z: int32 [n, A] atomic numbers (0 for padding atoms, which are trailing).
        E: float64 [n] energies, eV; None for unlabelled configurations.
        F: float64 [n, A, 3] forces, eV/Å (0 for padding); None when absent.
        cell: float64 [n, 3, 3] lattice vectors as **columns**, Å (qdyn's ``System.box``
            convention; ASE's rows are transposed on I/O); None for molecules.
        pbc: bool [n, 3] periodicity per lattice vector; None for molecules.
        E_states: float64 [n, S] multistate energies, eV; None when absent.
        F_states: float64 [n, S, A, 3] multistate forces (minus gradients), eV/Å.
        extras: per-frame arrays with leading axis n (e.g. ``converged`` bool [n],
            ``status`` str [n]).
        metadata: JSON-serialisable dict: method, basis, functional string, code versions,
            units, sampling recipe, seed, command to regenerate.
        source: where the data came from (a file name); used in error messages only.

    Example:
        >>> ds = Dataset.from_frames([([8, 1, 1], np.eye(3))], energies=[-2077.8])
        >>> ds.n_frames, ds.n_atoms, ds.E.dtype
        (1, 3, dtype('float64'))
    """

    R: np.ndarray
    Z: np.ndarray
    E: Optional[np.ndarray] = None
    F: Optional[np.ndarray] = None
    cell: Optional[np.ndarray] = None
    pbc: Optional[np.ndarray] = None
    E_states: Optional[np.ndarray] = None
    F_states: Optional[np.ndarray] = None
    extras: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self):
        self.R = np.asarray(self.R, dtype=np.float64)
        Z = np.asarray(self.Z)
        if Z.ndim == 1 and self.R.ndim == 3:
            Z = np.broadcast_to(Z, self.R.shape[:2])
        if Z.size and not np.issubdtype(Z.dtype, np.integer):
            raise QdynInputError(f"{self.source}: field 'Z': atomic numbers must be integers, got dtype {Z.dtype}")
        self.Z = np.array(Z, dtype=np.int32)
        for name in ("E", "F", "cell", "E_states", "F_states"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v, dtype=np.float64))
        if self.pbc is not None:
            self.pbc = np.asarray(self.pbc, dtype=bool)
        self.extras = {k: np.asarray(v) for k, v in self.extras.items()}
        self.validate()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls,
        frames: Sequence[tuple[Sequence, np.ndarray]],
        *,
        energies: Optional[Sequence[float]] = None,
        forces: Optional[Sequence[np.ndarray]] = None,
        metadata: Optional[dict] = None,
        source: str = "<memory>",
    ) -> "Dataset":
        """Build from per-frame (species, positions [A_i, 3] Å) with different atom counts.

        Species may be symbols or atomic numbers; frames are padded to the largest count.
        ``forces`` are per-frame [A_i, 3] eV/Å.
        """
        n = len(frames)
        zs = []
        for i, (z, _) in enumerate(frames):
            try:
                zs.append(np.array([elements.atomic_number(s) for s in z], dtype=np.int32))
            except elements.UnknownElementError as exc:
                raise QdynInputError(f"{source}: frame {i}, field 'Z': {exc}") from None
        A = max((len(z) for z in zs), default=0)
        R = np.zeros((n, A, 3))
        Z = np.zeros((n, A), np.int32)
        F = None if forces is None else np.zeros((n, A, 3))
        for i, (z, (_, r)) in enumerate(zip(zs, frames)):
            r = np.asarray(r, dtype=float)
            if r.shape != (len(z), 3):
                raise QdynInputError(f"{source}: frame {i}, field 'R': shape {r.shape}, expected {(len(z), 3)}")
            R[i, : len(z)] = r
            Z[i, : len(z)] = z
            if F is not None:
                f = np.asarray(forces[i], dtype=float)
                if f.shape != (len(z), 3):
                    raise QdynInputError(f"{source}: frame {i}, field 'F': shape {f.shape}, expected {(len(z), 3)}")
                F[i, : len(z)] = f
        E = None if energies is None else np.asarray(energies, dtype=float)
        return cls(R=R, Z=Z, E=E, F=F, metadata=dict(metadata or {}), source=source)

    # -- shape helpers --------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.R.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    @property
    def n_atoms(self) -> int:
        """Padded atom count A."""
        return int(self.R.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """bool [n, A], True for real atoms."""
        return self.Z > 0

    @property
    def n_real(self) -> np.ndarray:
        """int [n] real atoms per frame."""
        return self.mask.sum(1)

    @property
    def converged(self) -> np.ndarray:
        """bool [n]: frames whose labels converged (all True when not recorded)."""
        c = self.extras.get("converged")
        return np.ones(self.n_frames, bool) if c is None else np.asarray(c, bool)

    # -- validation -----------------------------------------------------------------------
    def _err(self, frame, name, msg):
        where = f"{self.source}: " + (f"frame {frame}, " if frame is not None else "")
        return QdynInputError(f"{where}field '{name}': {msg}")

    def validate(self) -> None:
        """Check shapes, species and finiteness; raise :class:`QdynInputError` naming frame and field.

        Positions must be finite for real atoms. Energies and forces must be finite except
        in frames recorded as not converged (``extras['converged']`` False), which keep
        whatever the calculation produced (NaN after an error) so that nothing is dropped.
        """
        R, Z = self.R, self.Z
        if R.ndim != 3 or R.shape[-1] != 3:
            raise self._err(None, "R", f"expected shape [n_frames, n_atoms, 3], got {R.shape}")
        n, A = R.shape[:2]
        if Z.shape != (n, A):
            raise self._err(None, "Z", f"expected shape {(n, A)} to match R, got {Z.shape}")
        bad_z = (Z < 0) | (Z > 36)
        if bad_z.any():
            i, a = np.argwhere(bad_z)[0]
            raise self._err(int(i), "Z", f"unknown element Z={int(Z[i, a])} at atom {int(a)}")
        m = Z > 0
        # Padding must be trailing so that writing only real atoms and padding again on
        # reading is an exact round trip.
        holes = m[:, 1:] & ~m[:, :-1]
        if holes.any():
            i = int(np.argwhere(holes)[0, 0])
            raise self._err(i, "Z", "padding atoms (Z=0) must come after all real atoms")
        bad = ~np.isfinite(R) & m[..., None]
        if bad.any():
            i, a, _ = np.argwhere(bad)[0]
            raise self._err(int(i), "R", f"non-finite coordinate (NaN or inf) at atom {int(a)}")
        shapes = {"E": (n,), "F": (n, A, 3), "cell": (n, 3, 3), "pbc": (n, 3)}
        if self.E_states is not None:
            S = self.E_states.shape[-1] if self.E_states.ndim == 2 else -1
            shapes["E_states"] = (n, S)
            shapes["F_states"] = (n, S, A, 3)
        elif self.F_states is not None:
            raise self._err(None, "F_states", "given without E_states")
        for name, shape in shapes.items():
            v = getattr(self, name)
            if v is not None and v.shape != shape:
                raise self._err(None, name, f"expected shape {shape}, got {v.shape}")
        for k, v in self.extras.items():
            if v.shape[:1] != (n,):
                raise self._err(None, f"extras[{k}]", f"leading axis must be n_frames={n}, got shape {v.shape}")
            if v.dtype == object:
                raise self._err(None, f"extras[{k}]", "object arrays are not allowed (no pickle)")
        ok = self.converged
        for name in ("E", "F", "E_states", "F_states"):
            v = getattr(self, name)
            if v is None or n == 0:
                continue
            fin = np.isfinite(v)
            if name in ("F", "F_states"):
                fin = fin | ~(m[:, None, :, None] if name == "F_states" else m[..., None])
            per_frame = fin.reshape(n, -1).all(1)
            bad_frames = np.flatnonzero(~per_frame & ok)
            if len(bad_frames):
                raise self._err(int(bad_frames[0]), name, "non-finite value in a frame not marked as failed "
                                "(extras['converged'] False)")
        if self.cell is not None and not np.isfinite(self.cell).all():
            raise self._err(int(np.argwhere(~np.isfinite(self.cell))[0, 0]), "cell", "non-finite value")
        try:
            json.dumps(self.metadata)
        except TypeError as exc:
            raise self._err(None, "metadata", f"must be JSON-serialisable ({exc})") from None

    def require(self, *names: str) -> None:
        """Raise a clear error if labels needed downstream (e.g. ``"E", "F"``) are missing."""
        for name in names:
            if getattr(self, name, None) is None:
                raise self._err(None, name, f"required but missing (this dataset has {self.fields_present()})")

    def fields_present(self) -> list[str]:
        return [f for f in ARRAY_FIELDS if getattr(self, f) is not None]

    # -- selection, splits ----------------------------------------------------------------
    def subset(self, idx) -> "Dataset":
        """Frames ``idx`` (int array or bool mask), metadata kept."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size and (idx.min() < -self.n_frames or idx.max() >= self.n_frames):
            raise self._err(None, "index", f"indices out of range for {self.n_frames} frames")
        kw = {f: (None if getattr(self, f) is None else getattr(self, f)[idx]) for f in ARRAY_FIELDS}
        return Dataset(**kw, extras={k: v[idx] for k, v in self.extras.items()},
                       metadata=json.loads(json.dumps(self.metadata)), source=self.source)

    def converged_only(self) -> "Dataset":
        """The frames whose labels converged (an explicit choice, never made silently)."""
        return self.subset(self.converged)

    @property
    def usable(self) -> np.ndarray:
        """bool [n]: frames fit for training: labels converged and every label finite."""
        ok = self.converged.copy()
        m = self.mask
        for name in ("E", "F", "E_states", "F_states"):
            v = getattr(self, name)
            if v is None:
                continue
            if name == "F":
                v = np.where(m[..., None], v, 0.0)
            elif name == "F_states":
                v = np.where(m[:, None, :, None], v, 0.0)
            ok &= np.isfinite(v).reshape(self.n_frames, -1).all(1)
        return ok

    def drop_failed(self) -> tuple["Dataset", np.ndarray]:
        """(the usable frames, the indices of the frames left out): what ``qdyn train`` and
        ``qdyn data split`` both do with labels that did not converge or are not finite."""
        ok = self.usable
        return (self if ok.all() else self.subset(ok)), np.flatnonzero(~ok)

    def split(self, fractions: Sequence[float], *, seed: int) -> tuple["Dataset", ...]:
        """Random split into parts of the given fractions (they must sum to 1)."""
        return tuple(self.subset(i) for i in split_indices(self.n_frames, fractions, seed=seed))

    def split_by_index_files(self, paths: Sequence[str | Path]) -> tuple["Dataset", ...]:
        """Split by index files (one integer per line, or .npy int arrays)."""
        return tuple(self.subset(read_index_file(p)) for p in paths)

    # -- statistics, plots ----------------------------------------------------------------
    def statistics(self) -> dict:
        """Summary: frames, atoms, element counts, energy range, force RMS (all in eV, Å)."""
        m = self.mask
        zs, counts = np.unique(self.Z[m], return_counts=True)
        st = {
            "n_frames": self.n_frames,
            "n_atoms_min": int(self.n_real.min()) if self.n_frames else 0,
            "n_atoms_max": int(self.n_real.max()) if self.n_frames else 0,
            "element_counts": {elements.symbol(int(z)): int(c) for z, c in zip(zs, counts)},
            "n_not_converged": int((~self.converged).sum()),
        }
        ok = self.converged
        if self.E is not None and ok.any():
            e = self.E[ok]
            st.update(energy_min_eV=float(e.min()), energy_max_eV=float(e.max()),
                      energy_range_eV=float(e.max() - e.min()), energy_mean_eV=float(e.mean()),
                      energy_std_eV=float(e.std()))
        if self.F is not None and ok.any():
            f = self.F[ok][m[ok]]
            st.update(force_rms_eV_per_A=float(np.sqrt(np.mean(f ** 2))), force_max_eV_per_A=float(np.abs(f).max()))
        if self.E_states is not None:
            st["n_states"] = int(self.E_states.shape[1])
        return st

    def plot_energy_distribution(self, path: Optional[str | Path] = None, *, bins: int = 40, relative: bool = True):
        """Histogram of energies (converged frames), relative to the minimum by default.

        Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch).
        Returns the figure; writes it to ``path`` if given.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.require("E")
        e = self.E[self.converged]
        if relative and e.size:
            e = e - e.min()
        fig = Figure(figsize=(5, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.hist(e, bins=bins, color="#3b6ea8")
        ax.set_xlabel("E − E_min [eV]" if relative else "E [eV]")
        ax.set_ylabel("frames")
        title = self.metadata.get("name") or Path(self.source).name
        ax.set_title(f"{title} ({e.size} frames)")
        fig.tight_layout()
        if path is not None:
            from ..plotting import save_figure

            save_figure(fig, path)
        return fig

    def to_system(self, i: int):
        """Frame ``i`` as (R [A_i, 3] Å, :class:`qdyn.System`) with padding stripped."""
        from ..system import System

        m = self.mask[i]
        cells = self.periodic_cells()
        return self.R[i][m], System.create(self.Z[i][m].tolist(), box=None if cells is None else cells[i])

    def periodic_cells(self) -> Optional[np.ndarray]:
        """Cells [n, 3, 3] Å of periodic frames, or None for molecules in free space.

        A cell with ``pbc`` all False (an extxyz ``Lattice`` written for a molecule) is not a
        box: such frames are free. qdyn's models are either fully periodic or free, so frames
        periodic along some lattice vectors only, or a dataset mixing periodic and free frames,
        are refused with the first such frame named.
        """
        if self.cell is None:
            return None
        pbc = np.ones((self.n_frames, 3), bool) if self.pbc is None else self.pbc
        partial = np.flatnonzero(pbc.any(1) & ~pbc.all(1))
        if len(partial):
            raise QdynInputError(f"{self.source}: frame {partial[0]} is periodic along some lattice vectors only "
                                 f"(pbc {pbc[partial[0]].tolist()}); qdyn models are fully periodic or free")
        periodic = pbc.all(1)
        if periodic.all():
            return self.cell
        if not periodic.any():
            return None
        raise QdynInputError(f"{self.source}: frames {np.flatnonzero(periodic)[0]} (periodic) and "
                             f"{np.flatnonzero(~periodic)[0]} (free) are mixed in one dataset")

    @staticmethod
    def concatenate(parts: Sequence["Dataset"], *, metadata: Optional[dict] = None) -> "Dataset":
        """Stack datasets (padding to the largest atom count); fields must be present in all."""
        A = max(p.n_atoms for p in parts)
        out = {}
        for f in ARRAY_FIELDS:
            vals = [getattr(p, f) for p in parts]
            if all(v is None for v in vals):
                out[f] = None
                continue
            if any(v is None for v in vals):
                raise QdynInputError(f"concatenate: field {f!r} is present in some datasets only")
            padded = []
            for v, p in zip(vals, parts):
                if f in ("R", "Z", "F") and p.n_atoms < A:
                    width = [(0, 0), (0, A - p.n_atoms)] + [(0, 0)] * (v.ndim - 2)
                    v = np.pad(v, width)
                elif f == "F_states" and p.n_atoms < A:
                    v = np.pad(v, [(0, 0), (0, 0), (0, A - p.n_atoms), (0, 0)])
                padded.append(v)
            out[f] = np.concatenate(padded)
        keys = set.intersection(*(set(p.extras) for p in parts)) if parts else set()
        extras = {k: np.concatenate([p.extras[k] for p in parts]) for k in sorted(keys)}
        return Dataset(**out, extras=extras, metadata=dict(metadata if metadata is not None else parts[0].metadata))


def split_indices(n: int, fractions: Sequence[float], *, seed: int) -> list[np.ndarray]:
    """Disjoint random index sets covering range(n) with sizes ∝ ``fractions`` (sum 1)."""
    fr = np.asarray(fractions, dtype=float)
    if fr.ndim != 1 or (fr < 0).any() or abs(fr.sum() - 1) > 1e-9:
        raise QdynInputError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    perm = np.random.default_rng(seed).permutation(n)
    edges = np.round(np.cumsum(fr) * n).astype(int)
    edges[-1] = n
    return [np.sort(p) for p in np.split(perm, edges[:-1])]


def read_index_file(path: str | Path) -> np.ndarray:
    """Indices from a text file (one int per line, '#' comments) or a .npy int array."""
    p = Path(path)
    try:
        if p.suffix == ".npy":
            idx = np.load(p, allow_pickle=False)
        else:
            lines = [ln.split("#")[0].strip() for ln in p.read_text().splitlines()]
            idx = np.array([int(ln) for ln in lines if ln], dtype=np.int64)
    except (ValueError, OSError) as exc:
        raise QdynInputError(f"{p}: cannot read index file ({exc})") from None
    if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
        raise QdynInputError(f"{p}: index file must hold a 1-d integer array, got {idx.dtype} {idx.shape}")
    return idx


def write_index_file(path: str | Path, idx) -> None:
    """Write indices, one per line (atomically)."""
    from .io import atomic_write_text

    atomic_write_text(Path(path), "".join(f"{int(i)}\n" for i in np.asarray(idx)))


def assert_datasets_equal(a: Dataset, b: Dataset, *, metadata: bool = True, exact: bool = True) -> None:
    """Assert two datasets hold identical arrays (bit-exact by default) and metadata."""
    for f in ARRAY_FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        assert (va is None) == (vb is None), f"field {f}: present in one dataset only"
        if va is not None:
            if exact:
                np.testing.assert_array_equal(va, vb, err_msg=f"field {f}")
            else:
                np.testing.assert_allclose(va, vb, rtol=1e-13, atol=1e-12, err_msg=f"field {f}")
    assert set(a.extras) == set(b.extras), f"extras differ: {sorted(a.extras)} vs {sorted(b.extras)}"
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k], err_msg=f"extras[{k}]")
    if metadata:
        assert a.metadata == b.metadata, "metadata differ"
