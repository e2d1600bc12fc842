"""ASE formats: the ASE database (.db), trajectories (.traj) and anything ``ase.io`` reads.

ASE's units are eV and Å by definition (readers of other codes' outputs convert on the way
in), so these formats need no unit declaration. Cells are ASE rows ↔ qdyn columns. The
database and trajectory store float64 arrays in binary, so round trips are exact; qdyn's
metadata and extras go into the database's ``metadata``/``data`` and the trajectory's
per-frame ``info``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..validation import QdynInputError
from .dataset import Dataset

_META_KEY = "qdyn_metadata"


def _atoms(ds: Dataset, i: int):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    m = ds.mask[i]
    kw = {"numbers": ds.Z[i][m], "positions": ds.R[i][m]}
    if ds.cell is not None:
        kw["cell"] = ds.cell[i].T
        kw["pbc"] = ds.pbc[i] if ds.pbc is not None else True
    atoms = Atoms(**kw)
    res = {}
    if ds.E is not None:
        res["energy"] = float(ds.E[i])
    if ds.F is not None:
        res["forces"] = ds.F[i][m]
    if res:
        atoms.calc = SinglePointCalculator(atoms, **res)
    return atoms


def _frame_data(ds: Dataset, i: int) -> dict:
    m = ds.mask[i]
    d = {f"extras.{k}": (v[i].item() if v[i].ndim == 0 else v[i]) for k, v in ds.extras.items()}
    for k, v in list(d.items()):
        if isinstance(v, np.ndarray) and v.dtype.kind == "U":
            d[k] = v.tolist()
    if ds.E_states is not None:
        d["E_states"] = ds.E_states[i]
        d["F_states"] = ds.F_states[i][:, m]
    return d


def write_ase(ds: Dataset, path: Path, fmt: str) -> None:
    from .io import atomic_write

    if fmt == "ase-db":
        import ase.db

        def w(tmp):
            tmp.unlink()  # ase.db wants to create the file itself
            with ase.db.connect(str(tmp), type="db", append=False) as db:
                for i in range(ds.n_frames):
                    db.write(_atoms(ds, i), data=_frame_data(ds, i))
            db = ase.db.connect(str(tmp), type="db")
            db.metadata = {_META_KEY: json.dumps(ds.metadata, sort_keys=True)}

        atomic_write(path, w, suffix=".db")
    elif fmt == "traj":
        from ase.io.trajectory import Trajectory

        def w(tmp):
            with Trajectory(str(tmp), "w") as tr:
                for i in range(ds.n_frames):
                    atoms = _atoms(ds, i)
                    atoms.info.update(_frame_data(ds, i))
                    if i == 0:
                        atoms.info[_META_KEY] = json.dumps(ds.metadata, sort_keys=True)
                    tr.write(atoms)

        atomic_write(path, w, suffix=".traj")
    else:
        raise QdynInputError(f"{path}: cannot write ASE format {fmt!r}")


def read_ase(path: Path, fmt: str) -> Dataset:
    """Read through ASE (db, traj, or any ``ase.io`` format)."""
    images, datas, meta = [], [], {}
    try:
        if fmt == "ase-db":
            import ase.db

            db = ase.db.connect(str(path), type="db")
            for row in db.select():
                images.append(row.toatoms())
                datas.append(dict(row.data))
            meta_raw = db.metadata.get(_META_KEY)
        else:
            import ase.io

            images = ase.io.read(str(path), index=":", format="traj" if fmt == "traj" else None)
            datas = [dict(a.info) for a in images]
            meta_raw = datas[0].get(_META_KEY) if datas else None
    except QdynInputError:
        raise
    except Exception as exc:  # ASE raises many types for truncated/corrupt files
        raise QdynInputError(f"{path}: ASE could not read the file ({type(exc).__name__}: {exc})") from None
    if not images:
        raise QdynInputError(f"{path}: no frames")
    if meta_raw:
        meta = json.loads(meta_raw)
    n = len(images)
    A = max(len(a) for a in images)
    R = np.zeros((n, A, 3))
    Z = np.zeros((n, A), np.int32)
    E, F, cells, pbcs = [], [], [], []
    for i, a in enumerate(images):
        k = len(a)
        R[i, :k] = a.get_positions()
        Z[i, :k] = a.numbers
        calc = a.calc
        res = getattr(calc, "results", {}) if calc is not None else {}
        E.append(res.get("energy"))
        f = res.get("forces")
        if f is not None:
            ff = np.zeros((A, 3))
            ff[:k] = f
            F.append(ff)
        else:
            F.append(None)
        if a.pbc.any() or a.cell.rank == 3:
            cells.append(np.array(a.cell).T)
            pbcs.append(a.pbc.copy())
        else:
            cells.append(None)
            pbcs.append(None)
    kw = {"R": R, "Z": Z}
    for name, vals in (("E", E), ("F", F), ("cell", cells)):
        have = [v is not None for v in vals]
        if all(have):
            kw[name] = np.array(vals, dtype=float)
        elif any(have):
            i = have.index(False)
            raise QdynInputError(f"{path}: frame {i}, field {name!r}: present in some frames only")
    if "cell" in kw:
        kw["pbc"] = np.array(pbcs, bool)
    extras = {}
    keys = set.intersection(*(set(d) for d in datas)) if datas else set()
    for k in sorted(keys):
        if k.startswith("extras."):
            extras[k[len("extras."):]] = np.array([d[k] for d in datas])
    if "E_states" in keys:
        kw["E_states"] = np.array([d["E_states"] for d in datas], dtype=float)
        S = kw["E_states"].shape[1]
        Fs = np.zeros((n, S, A, 3))
        for i, d in enumerate(datas):
            fs = np.asarray(d["F_states"], dtype=float)
            Fs[i, :, : fs.shape[1]] = fs
        kw["F_states"] = Fs
    return Dataset(**kw, extras=extras, metadata=meta, source=str(path))
