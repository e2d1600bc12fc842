"""Reading and writing datasets: qdyn npz, extended XYZ, ASE db/traj, MD17/rMD17 npz.

Units are **declared, never guessed**. Formats that record their units (qdyn's npz, ASE's
db and traj, whose units are eV and Å by definition) are read without declarations, and a
declaration that contradicts the file is an error. Formats that do not (MD17/rMD17 npz,
extended XYZ not written by qdyn) need ``energy_unit=`` and ``length_unit=`` (forces default
to energy_unit/length_unit, or pass ``force_unit=``). Conversion goes through
:func:`qdyn.units.convert` only.

Files are written atomically (a temporary file in the same directory, then
:func:`os.replace`), and npz files are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from .. import elements, units
from ..validation import QdynInputError
from .dataset import Dataset

__all__ = ["read", "write", "output_format", "FORMATS", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_savez",
           "detect_format"]

QDYN_FORMAT = "qdyn-dataset"
QDYN_FORMAT_VERSION = 1
FORMATS = ("qdyn", "extxyz", "ase-db", "traj", "md17", "rmd17", "ase")
_QDYN_UNITS = {"energy": "eV", "length": "Angstrom", "force": "eV/Angstrom"}


# -- atomic writes -------------------------------------------------------------------------
def atomic_write(path: Path, write_fn, *, suffix: str = "") -> None:
    """Write through ``write_fn(tmp_path)``, fsync, then ``os.replace``: readers never see
    half a file, and a crash leaves the old file or the new one. The one atomic writer of
    qdyn (text, bytes, npz, plots, ASE files, checkpoints).

    Args:
        path: the file to (re)place.
        write_fn: writes the whole content to the temporary path it is given.
        suffix: appended to the temporary name (writers that pick a format from it).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    except OSError as exc:  # read-only or full file system: name the file the user asked for
        raise QdynInputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    os.close(fd)
    # mkstemp creates 0600; give the file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write_fn(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:  # e.g. ENOSPC while writing
            raise QdynInputError(f"{path}: cannot write ({exc.strerror or exc}); nothing was replaced") from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def w(tmp):
        tmp.write_text(text)

    atomic_write(Path(path), w)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def atomic_savez(path: Path, arrays: dict, *, compressed: bool = True) -> None:
    """``np.savez(_compressed)`` to ``path`` atomically (the name is kept exactly)."""
    def w(tmp):
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)

    atomic_write(Path(path), w)


def load_npz(path: Path) -> dict:
    """All arrays of an npz file (no pickle); a truncated or corrupt file raises naming it."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        # np.load would try the bytes as a pickle and advise allow_pickle=True: never.
        raise QdynInputError(f"{path}: not an npz file (no zip archive inside); truncated, corrupt or another format")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for k in z.files:
                try:
                    out[k] = z[k]
                except ValueError as exc:
                    if "pickle" in str(exc):
                        raise QdynInputError(f"{path}: field {k!r} holds Python objects (pickle), which qdyn never loads") from None
                    raise
            return out
    except QdynInputError:
        raise
    except FileNotFoundError:
        raise QdynInputError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        raise QdynInputError(f"{path}: truncated or corrupt npz file ({type(exc).__name__}: {exc})") from None


# -- format detection ---------------------------------------------------------------------
def detect_format(path: Path) -> str:
    """Format from the file name and, for npz, its keys."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf == ".npz":
        keys = set(load_npz(path))
        if "__qdyn__" in keys:
            return "qdyn"
        if {"R", "z", "E"} <= keys:
            return "md17"
        if {"coords", "nuclear_charges", "energies"} <= keys:
            return "rmd17"
        raise QdynInputError(
            f"{path}: npz layout not recognised (keys {sorted(keys)}); qdyn reads its own npz, "
            "MD17 (R, z, E, F) and rMD17 (coords, nuclear_charges, energies, forces)"
        )
    if suf in (".xyz", ".extxyz"):
        return "extxyz"
    if suf == ".db":
        return "ase-db"
    if suf == ".traj":
        return "traj"
    return "ase"


def _declared(path, *, energy_unit, length_unit, force_unit, need: bool, fmt: str, hint: str):
    """Resolve declared units; raise if required and missing."""
    if need and (energy_unit is None or length_unit is None):
        missing = [n for n, v in (("energy_unit", energy_unit), ("length_unit", length_unit)) if v is None]
        raise QdynInputError(
            f"{path}: the {fmt} format does not record units; declare them with {', '.join(m + '=' for m in missing)} "
            f"({hint}). qdyn never guesses units."
        )
    if force_unit is None and energy_unit is not None and length_unit is not None:
        force_unit = f"{energy_unit}/{length_unit}"
    out = {}
    for key, unit, dim in (("energy", energy_unit, "eV"), ("length", length_unit, "Angstrom"),
                           ("force", force_unit, "eV/Angstrom")):
        if unit is None:
            continue
        try:
            units.convert(1.0, unit, dim)
        except units.UnitError as exc:
            raise QdynInputError(f"{path}: field '{key}_unit': {exc}") from None
        out[key] = unit
    # Partial declarations are kept: a geometry-only file needs just a length unit.
    return out or None


def _check_same_units(path, declared, recorded, fmt):
    if declared is None:
        return
    for k, v in declared.items():
        if units.convert(1.0, v, recorded[k]) != 1.0:
            raise QdynInputError(
                f"{path}: field '{k}_unit': you declared {v!r} but the {fmt} file stores {recorded[k]!r}; "
                "drop the declaration or fix it"
            )


# -- public API ---------------------------------------------------------------------------
def read(
    path: str | Path,
    *,
    format: Optional[str] = None,
    energy_unit: Optional[str] = None,
    length_unit: Optional[str] = None,
    force_unit: Optional[str] = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    check_plausibility: bool = True,
) -> Dataset:
    """Read a dataset, converting to eV and Å.

    Args:
        path: the file, or ``shipped:NAME`` for a dataset shipped with qdyn
            (:func:`qdyn.data.load_shipped`: it records its units, so the unit and key
            arguments do not apply).
        format: one of :data:`FORMATS`; by default from the suffix (and npz keys).
        energy_unit: unit of energies in the file (``"eV"``, ``"Hartree"``, ``"kcal/mol"``
            ...); required for formats without unit records (MD17/rMD17, foreign extxyz).
        length_unit: unit of positions and cells (``"Angstrom"``, ``"Bohr"``).
        force_unit: unit of forces; default ``energy_unit/length_unit``.
        energy_key: extxyz comment key holding the energy.
        forces_key: extxyz per-atom property holding the forces.
        check_plausibility: refuse energies, forces and coordinates outside any chemistry
            in the declared units (:mod:`qdyn.data.plausibility`: a Hartree file declared
            as eV, a coordinate at 1e6 Å).

    Returns:
        A validated :class:`Dataset` (``source`` = the path).

    Raises:
        QdynInputError: missing/contradictory unit declarations, truncated or corrupt files,
            NaN coordinates, unknown elements, inconsistent shapes; the message names the
            file, the frame and the field.
    """
    if str(path).startswith("shipped:"):
        from .shipped import load_shipped

        return load_shipped(str(path).split(":", 1)[1])
    path = Path(path)
    if not path.exists():
        raise QdynInputError(f"{path}: no such file")
    if path.is_dir() and path.suffix.lower() not in (".db",):
        raise QdynInputError(f"{path}: is a directory, not a dataset file")
    ds = _read_any(path, format, dict(energy_unit=energy_unit, length_unit=length_unit, force_unit=force_unit),
                   energy_key, forces_key)
    if check_plausibility:
        from .plausibility import check_dataset

        check_dataset(ds, source=str(path))
    return ds


def _read_any(path: Path, format: Optional[str], decl: dict, energy_key: str, forces_key: str) -> Dataset:
    fmt = format or detect_format(path)
    if fmt == "qdyn":
        return _read_qdyn(path, _declared(path, **decl, need=False, fmt=fmt, hint=""))
    if fmt in ("md17", "rmd17"):
        d = _declared(path, **decl, need=True, fmt=fmt,
                      hint="MD17 and rMD17 store kcal/mol and Angstrom: energy_unit='kcal/mol', length_unit='Angstrom'")
        return _read_md17(path, d, fmt)
    if fmt == "extxyz":
        from .extxyz import read_extxyz

        return read_extxyz(path, declared=_declared(path, **decl, need=False, fmt=fmt, hint=""),
                           energy_key=energy_key, forces_key=forces_key)
    if fmt in ("ase-db", "traj", "ase"):
        from .ase_io import read_ase

        _check_same_units(path, _declared(path, **decl, need=False, fmt=fmt, hint=""), _QDYN_UNITS, "ASE (eV, Å)")
        return read_ase(path, fmt)
    raise QdynInputError(f"{path}: unknown format {fmt!r}; choose one of {FORMATS}")


def write(
    dataset: Dataset,
    path: str | Path,
    *,
    format: Optional[str] = None,
    energy_unit: str = "eV",
    length_unit: str = "Angstrom",
) -> Path:
    """Write a dataset atomically.

    Args:
        dataset: the data (eV, Å).
        path: destination; the format follows the suffix unless ``format`` is given
            (``.npz`` → qdyn's own npz; use ``format="md17"``/``"rmd17"`` for those layouts).
        format: one of :data:`FORMATS` except ``"ase"``.
        energy_unit: unit to write energies in (MD17/rMD17 and extxyz; qdyn and ASE formats
            are always eV/Å).
        length_unit: unit to write positions in (as above).

    Returns:
        The path written.
    """
    path = Path(path)
    fmt = output_format(path, format)
    for name, unit, dim in (("energy_unit", energy_unit, "eV"), ("length_unit", length_unit, "Angstrom")):
        try:
            units.convert(1.0, unit, dim)
        except units.UnitError as exc:
            raise QdynInputError(f"{path}: field '{name}': {exc}") from None
    if fmt in ("qdyn", "ase-db", "traj") and (units.convert(1.0, energy_unit, "eV") != 1.0
                                              or units.convert(1.0, length_unit, "Angstrom") != 1.0):
        raise QdynInputError(f"{path}: the {fmt} format stores eV and Angstrom only")
    if fmt == "qdyn":
        _write_qdyn(dataset, path)
    elif fmt in ("md17", "rmd17"):
        _write_md17(dataset, path, fmt, energy_unit, length_unit)
    elif fmt == "extxyz":
        from .extxyz import write_extxyz

        write_extxyz(dataset, path, energy_unit=energy_unit, length_unit=length_unit)
    elif fmt in ("ase-db", "traj"):
        from .ase_io import write_ase

        write_ase(dataset, path, fmt)
    else:
        raise QdynInputError(f"{path}: cannot write format {fmt!r}")
    return path


def output_format(path: str | Path, format: Optional[str] = None) -> str:
    """The format :func:`write` would use for ``path``; raises :class:`QdynInputError` for a
    suffix it cannot write or a directory that does not take files, so long jobs can check
    their output before they start."""
    path = Path(path)
    suf = path.suffix.lower()
    fmt = format or {".npz": "qdyn", ".xyz": "extxyz", ".extxyz": "extxyz", ".db": "ase-db", ".traj": "traj"}.get(suf)
    if fmt is None:
        raise QdynInputError(f"{path}: cannot write a dataset with the suffix {suf!r}; use .npz, .xyz, .extxyz, .db "
                             "or .traj (or pass format=)")
    if fmt not in FORMATS[:-1]:
        raise QdynInputError(f"{path}: cannot write format {fmt!r}; choose one of {FORMATS[:-1]}")
    if path.is_dir():
        raise QdynInputError(f"{path}: is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise QdynInputError(f"{path}: cannot write into {existing} (permission denied)")
    return fmt


# -- qdyn npz -----------------------------------------------------------------------------
def _write_qdyn(ds: Dataset, path: Path) -> None:
    header = {
        "format": QDYN_FORMAT,
        "version": QDYN_FORMAT_VERSION,
        "units": _QDYN_UNITS,
        "fields": ds.fields_present(),
        "extras": sorted(ds.extras),
        "metadata": ds.metadata,
    }
    arrays = {"__qdyn__": np.array(json.dumps(header, sort_keys=True))}
    for f in ds.fields_present():
        arrays[f] = getattr(ds, f)
    for k, v in ds.extras.items():
        arrays[f"extras/{k}"] = v
    atomic_savez(path, arrays)


def _read_qdyn(path: Path, declared) -> Dataset:
    z = load_npz(path)
    try:
        header = json.loads(str(z["__qdyn__"]))
    except (KeyError, json.JSONDecodeError) as exc:
        raise QdynInputError(f"{path}: field '__qdyn__': unreadable header ({exc})") from None
    if header.get("format") != QDYN_FORMAT or header.get("version", 0) > QDYN_FORMAT_VERSION:
        raise QdynInputError(f"{path}: field '__qdyn__': not a qdyn dataset of a version this qdyn reads ({header.get('format')}, v{header.get('version')})")
    _check_same_units(path, declared, header["units"], "qdyn")
    kw = {}
    for f in header["fields"]:
        if f not in z:
            raise QdynInputError(f"{path}: field {f!r}: listed in the header but missing (truncated file?)")
        kw[f] = z[f]
    for f in ("R", "Z"):
        if f not in kw:
            raise QdynInputError(f"{path}: field {f!r}: required but missing")
    extras = {}
    for k in header["extras"]:
        if f"extras/{k}" not in z:
            raise QdynInputError(f"{path}: field 'extras/{k}': listed in the header but missing")
        extras[k] = z[f"extras/{k}"]
    return Dataset(**kw, extras=extras, metadata=header.get("metadata", {}), source=str(path))


# -- MD17 / rMD17 npz ---------------------------------------------------------------------
_MD17_KEYS = {"md17": ("R", "z", "E", "F"), "rmd17": ("coords", "nuclear_charges", "energies", "forces")}


def _read_md17(path: Path, u: dict, fmt: str) -> Dataset:
    z = load_npz(path)
    kR, kZ, kE, kF = _MD17_KEYS[fmt]
    for k in (kR, kZ, kE):
        if k not in z:
            raise QdynInputError(f"{path}: field {k!r}: required by the {fmt} layout but missing")
    R = np.asarray(z[kR])
    if R.ndim != 3 or R.shape[-1] != 3:
        raise QdynInputError(f"{path}: field {kR!r}: expected shape [n_frames, n_atoms, 3], got {R.shape}")
    n, A = R.shape[:2]
    Z = np.asarray(z[kZ])
    if Z.shape != (A,):
        raise QdynInputError(f"{path}: field {kZ!r}: expected shape ({A},) to match {kR!r}, got {Z.shape}")
    E = np.asarray(z[kE], dtype=float)
    if E.shape not in ((n,), (n, 1)):
        raise QdynInputError(f"{path}: field {kE!r}: expected shape ({n},) or ({n}, 1), got {E.shape}")
    F = z.get(kF)
    if F is not None and F.shape != R.shape:
        raise QdynInputError(f"{path}: field {kF!r}: expected shape {R.shape} to match {kR!r}, got {F.shape}")
    try:
        for zi in np.unique(Z):
            elements.atomic_number(int(zi))
    except elements.UnknownElementError as exc:
        raise QdynInputError(f"{path}: field {kZ!r}: {exc}") from None
    meta = {"units_in_file": u, "format_in_file": fmt}
    for k in ("name", "theory", "md5", "type"):
        if k in z and z[k].dtype.kind == "U":
            meta[k] = str(z[k])
    return Dataset(
        R=units.convert(R.astype(float), u["length"], "Angstrom"),
        Z=np.broadcast_to(Z.astype(np.int32), (n, A)),
        E=units.convert(E.reshape(n), u["energy"], "eV"),
        F=None if F is None else units.convert(F.astype(float), u["force"], "eV/Angstrom"),
        metadata=meta,
        source=str(path),
    )


def _write_md17(ds: Dataset, path: Path, fmt: str, energy_unit: str, length_unit: str) -> None:
    if not (ds.mask.all() and (ds.Z == ds.Z[:1]).all()):
        raise QdynInputError(f"{path}: the {fmt} layout needs every frame to have the same atoms (no padding)")
    ds.require("E")
    kR, kZ, kE, kF = _MD17_KEYS[fmt]
    fu = f"{energy_unit}/{length_unit}"
    arrays = {
        kR: units.convert(ds.R, "Angstrom", length_unit),
        kZ: ds.Z[0].astype(np.int64 if fmt == "rmd17" else np.uint8),
        kE: units.convert(ds.E, "eV", energy_unit)[:, None] if fmt == "md17" else units.convert(ds.E, "eV", energy_unit),
    }
    if ds.F is not None:
        arrays[kF] = units.convert(ds.F, "eV/Angstrom", fu)
    if fmt == "md17":
        arrays["theory"] = np.array(str(ds.metadata.get("labeler", {}).get("method", "unknown")))
    atomic_savez(path, arrays)
