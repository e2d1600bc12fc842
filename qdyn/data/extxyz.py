"""Extended XYZ, read and written by qdyn itself.

Why not ASE's reader/writer: ASE writes positions with 8 decimals (a round trip would not
be exact) and its errors do not say which frame and line failed. qdyn writes floats with
``repr`` (shortest string that parses back to the same float64) and parses the standard
``key=value`` comment line and ``Properties=name:type:count`` columns, so files stay
readable by ASE, OVITO, MACE, NequIP and others.

qdyn records units in every frame (``energy_unit``, ``length_unit``, ``force_unit``); one
record must hold for the whole file. A file without them is read in the declared units, or,
with none declared, in ASE's convention (eV, Å) with a one-line notice on stderr (logger
``qdyn``); the plausibility checks (:mod:`qdyn.data.plausibility`) then catch the Hartree,
kcal/mol or Bohr files that convention would misread.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import elements, units
from ..validation import QdynInputError
from .dataset import Dataset

_RESERVED = {"Lattice", "Properties", "pbc", "energy_unit", "length_unit", "force_unit", "energies_states",
             "qdyn_metadata"}
_TOKEN = re.compile(r'\s*([A-Za-z_][\w\-\.]*)(?:=("(?:[^"\\]|\\.)*"|\{[^}]*\}|[^\s"]+))?')


def _fmt(x) -> str:
    return repr(float(x))


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(v: str) -> str:
    if v.startswith('"') and v.endswith('"'):
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    if v.startswith("{") and v.endswith("}"):
        return v[1:-1]
    return v


def _value(x) -> str:
    """An extras value as an extxyz token."""
    x = np.asarray(x)
    if x.ndim == 0:
        if x.dtype == bool:
            return "T" if x else "F"
        if x.dtype.kind in "iu":
            return str(int(x))
        if x.dtype.kind == "f":
            return _fmt(x)
        return _quote(str(x))
    if x.dtype.kind not in "biuf":
        raise ValueError("only numeric vectors can be written as extxyz values")
    if x.dtype == bool:
        return _quote(" ".join("T" if v else "F" for v in x))
    return _quote(" ".join(str(int(v)) if x.dtype.kind in "iu" else _fmt(v) for v in x))


def write_extxyz(ds: Dataset, path: Path, *, energy_unit: str = "eV", length_unit: str = "Angstrom") -> None:
    """Write ``ds`` as extended XYZ (atomically), energies/positions in the given units."""
    from .io import atomic_write_text

    force_unit = f"{energy_unit}/{length_unit}"
    for k, v in ds.extras.items():
        if v.ndim > 2:
            raise QdynInputError(f"{path}: field 'extras[{k}]': extxyz holds per-frame scalars and vectors only "
                                 f"(shape {v.shape}); use the qdyn npz format")
    lines = []
    S = 0 if ds.E_states is None else ds.E_states.shape[1]
    for i in range(ds.n_frames):
        m = ds.mask[i]
        cols = [("pos", units.convert(ds.R[i][m], "Angstrom", length_unit))]
        if ds.F is not None:
            cols.append(("forces", units.convert(ds.F[i][m], "eV/Angstrom", force_unit)))
        for s in range(S):
            cols.append((f"forces_state{s}", units.convert(ds.F_states[i, s][m], "eV/Angstrom", force_unit)))
        cell = None if ds.cell is None else units.convert(ds.cell[i], "Angstrom", length_unit)
        info = []
        if ds.E is not None:
            info.append(f"energy={_fmt(units.convert(ds.E[i], 'eV', energy_unit))}")
        if ds.E_states is not None:
            info.append("energies_states=" + _quote(" ".join(_fmt(v) for v in units.convert(ds.E_states[i], "eV", energy_unit))))
        if ds.pbc is not None:
            info.append("pbc=" + _quote(" ".join("T" if p else "F" for p in ds.pbc[i])))
        for k, v in ds.extras.items():
            if k in _RESERVED or not re.fullmatch(r"[A-Za-z_][\w\-\.]*", k):
                raise QdynInputError(f"{path}: field 'extras[{k}]': name not usable as an extxyz key")
            info.append(f"{k}={_value(v[i])}")
        info.append(f"energy_unit={_quote(energy_unit)} length_unit={_quote(length_unit)} force_unit={_quote(force_unit)}")
        if i == 0 and ds.metadata:
            info.append("qdyn_metadata=" + _quote(json.dumps(ds.metadata, sort_keys=True)))
        lines.extend(frame_lines([elements.symbol(int(z)) for z in ds.Z[i][m]], cols, info, cell=cell))
    atomic_write_text(path, "\n".join(lines) + "\n")


def frame_lines(symbols: Sequence[str], columns: Sequence[tuple], info: Sequence[str] = (), *,
                cell: Optional[np.ndarray] = None) -> list:
    """One extxyz frame as lines (no newlines): atom count, comment line, one line per atom.

    Floats are written with ``repr`` (they parse back to the same float64).

    Args:
        symbols: [n] element symbols.
        columns: ``(name, values [n, k])`` real-valued per-atom columns after the species
            (``"pos"`` first), declared in ``Properties``.
        info: further ``key=value`` tokens of the comment line, already formatted.
        cell: [3, 3] Å lattice vectors as columns, or None (no ``Lattice``).
    """
    head = []
    if cell is not None:
        # extxyz lists lattice vectors one after another (ASE rows = qdyn columns).
        head.append("Lattice=" + _quote(" ".join(_fmt(v) for v in np.asarray(cell).T.ravel())))
    head.append("Properties=species:S:1" + "".join(f":{name}:R:{np.shape(v)[1]}" for name, v in columns))
    lines = [str(len(symbols)), " ".join(head + list(info))]
    for a, s in enumerate(symbols):
        row = [s]
        for _, c in columns:
            row.extend(_fmt(v) for v in c[a])
        lines.append(" ".join(row))
    return lines


class ExtxyzWriter:
    """Append the frames of one MD replica to an extended XYZ file while the run goes.

    Trajectories grow, so they are appended to (not replaced atomically); the writer can
    cut the file back to a checkpoint's frame count on restart, so a resumed run never
    duplicates or loses frames. Units: Å, Å/fs, eV, fs, K (recorded in every frame).

    Args:
        path: file; created (or truncated to ``keep_frames`` frames when resuming).
        species: [n] atomic numbers.
        box: the periodic cell, [3, 3] Å (columns = lattice vectors) or [3] sides, None in
            free space; frames may pass their own cell (NPT).
        keep_frames: frames already in the file to keep (restart), 0 to start fresh.
    """

    def __init__(self, path, species: Sequence[int], box: Optional[np.ndarray], *, keep_frames: int = 0):
        self.path = Path(path)
        self.symbols = [elements.symbol(int(z)) for z in species]
        self.masses = np.array([elements.mass(int(z)) for z in species])
        self.box = None if box is None else (np.diag(box) if np.ndim(box) == 1 else np.asarray(box, float))
        self.n_frames = 0
        if keep_frames:
            self._cut_back(keep_frames, len(self.symbols) + 2)
            self.n_frames = keep_frames
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def _cut_back(self, keep_frames: int, lines_per_frame: int) -> None:
        """Drop the frames after the first ``keep_frames`` (written after the checkpoint) with
        one truncate at the end of the last kept line: a kill leaves the whole file or the cut
        one, never a rewritten half."""
        want = keep_frames * lines_per_frame
        offset, n_lines = 0, 0
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    if n_lines == want or not line.endswith(b"\n"):
                        break
                    offset += len(line)
                    n_lines += 1
        except FileNotFoundError:
            raise QdynInputError(f"{self.path}: missing; the checkpoint continues a trajectory of {keep_frames} "
                                 "frames") from None
        if n_lines < want:
            raise QdynInputError(f"{self.path}: holds {n_lines // lines_per_frame} complete frames, fewer than the "
                                 f"{keep_frames} the checkpoint expects (truncated?)")
        os.truncate(self.path, offset)

    def append(self, *, time_fs, R, V, energy, temperature, cell=None):
        """Append frames: time [F] fs, R [F, n, 3] Å, V [F, n, 3] Å/fs, energy [F] eV (potential),
        temperature [F] K, and optionally each frame's cell [F, 3, 3] Å (columns)."""
        lines = []
        for f in range(len(time_fs)):
            box = self.box if cell is None else np.asarray(cell[f], float)
            info = [f'pbc="{"T T T" if box is not None else "F F F"}"', f"time={_fmt(time_fs[f])}",
                    f"energy={_fmt(energy[f])}", f"temperature={_fmt(temperature[f])}",
                    'energy_unit=eV length_unit=Angstrom force_unit="eV/Angstrom" time_unit=fs vel_unit="Angstrom/fs"']
            # `momenta` is the column ASE reads (atoms.get_velocities()), in ASE's units
            # amu·Å/t_ASE with t_ASE = Å·sqrt(amu/eV) = units.TIME_UNIT_FS fs; `vel` stays Å/fs.
            momenta = self.masses[:, None] * np.asarray(V[f]) * units.TIME_UNIT_FS
            lines.extend(frame_lines(self.symbols, [("pos", R[f]), ("vel", V[f]), ("momenta", momenta)], info,
                                     cell=box))
        with open(self.path, "a") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
        self.n_frames += len(time_fs)

    def close(self):
        pass


def _parse_comment(line: str, where: str) -> dict:
    out = {}
    pos = 0
    line = line.rstrip("\n")
    while pos < len(line):
        if not line[pos:].strip():
            break
        m = _TOKEN.match(line, pos)
        if not m or m.end() == pos:
            raise QdynInputError(f"{where}: cannot parse the comment line near {line[pos:pos + 30]!r}")
        key, val = m.group(1), m.group(2)
        out[key] = True if val is None else _unquote(val)
        pos = m.end()
    return out


def _parse_scalar(v):
    if v is True or v in ("T", "True", "true"):
        return True
    if v in ("F", "False", "false"):
        return False
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    parts = v.split()
    if len(parts) > 1:
        vals = [_parse_scalar(p) for p in parts]
        if all(isinstance(x, bool) for x in vals):
            return np.array(vals, bool)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            return np.array(vals)
    return v


_ASE_UNITS = {"energy": "eV", "length": "Angstrom", "force": "eV/Angstrom"}
_log = logging.getLogger("qdyn")


def _recorded_units(path: Path, frames) -> Optional[dict]:
    """The unit record all frames share, or None when no frame has one; a record that
    changes (or appears, or vanishes) mid-file is refused, naming the frame."""
    def record(info):
        if "energy_unit" not in info and "length_unit" not in info:
            return None
        return {k: info.get(f"{k}_unit") for k in ("energy", "length", "force")}

    first = record(frames[0][3])
    for fi, ln, _, info, _ in frames[1:]:
        rec = record(info)
        if rec != first:
            raise QdynInputError(
                f"{path}: frame {fi} (line {ln + 2}): field 'energy_unit/length_unit/force_unit': this frame records "
                f"{rec} but frame 0 records {first}; qdyn reads one unit system per file - convert or split the file")
    if first is not None:
        if first["force"] is None and first["energy"] and first["length"]:
            first["force"] = f"{first['energy']}/{first['length']}"
        first = {k: v for k, v in first.items() if v is not None}
    return first


def read_extxyz(path: Path, *, declared: Optional[dict], energy_key: str = "energy", forces_key: str = "forces") -> Dataset:
    """Read extended XYZ; see module docstring for units."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise QdynInputError(f"{path}: not a text file ({exc})") from None
    lines = text.splitlines()
    frames = []
    ln = 0
    while ln < len(lines):
        if not lines[ln].strip():
            ln += 1
            continue
        fi = len(frames)
        where = f"{path}: frame {fi} (line {ln + 1})"
        try:
            na = int(lines[ln].strip())
        except ValueError:
            raise QdynInputError(f"{where}: field 'n_atoms': expected an atom count, got {lines[ln][:40]!r}") from None
        if na < 1:
            raise QdynInputError(f"{where}: field 'n_atoms': expected a positive atom count, got {na}")
        if ln + 1 >= len(lines):
            raise QdynInputError(f"{where}: truncated file: missing the comment line")
        info = _parse_comment(lines[ln + 1], where)
        body = lines[ln + 2: ln + 2 + na]
        if len(body) < na:
            raise QdynInputError(f"{where}: truncated file: expected {na} atom lines, found {len(body)}")
        frames.append((fi, ln, na, info, body))
        ln += 2 + na
    if not frames:
        raise QdynInputError(f"{path}: no frames (empty file)")

    first = frames[0][3]
    recorded = _recorded_units(path, frames)
    if recorded is not None and declared is not None:
        for k, v in declared.items():
            if k in recorded and units.convert(1.0, v, recorded[k]) != 1.0:
                raise QdynInputError(f"{path}: field '{k}_unit': you declared {v!r} but the file records {recorded[k]!r}")
    u = {**(declared or {}), **(recorded or {})}
    # Only the units of quantities the file holds must be known.
    has_energy = any(energy_key in f[3] or "energies_states" in f[3] for f in frames)
    has_forces = any(c == forces_key or c.startswith("forces_state") for f in frames
                     for c in f[3].get("Properties", "").split(":"))
    need = ["length"] + (["energy"] if has_energy else []) + (["force"] if has_forces else [])
    missing = [k for k in need if k not in u]
    if missing:
        # ASE's convention (what ASE, MACE, NequIP and most codes write); the plausibility
        # checks catch the Hartree/Bohr files this would misread.
        for k in missing:
            u[k] = _ASE_UNITS[k]
        _log.warning(f"notice: {path} records no units; reading it as ASE's convention (eV, Angstrom, eV/Angstrom) "
                     "- declare --energy-unit/--length-unit if it is not")
    try:
        for k, dim in (("energy", "eV"), ("length", "Angstrom"), ("force", "eV/Angstrom")):
            if k in u:
                units.convert(1.0, u[k], dim)
    except units.UnitError as exc:
        raise QdynInputError(f"{path}: recorded units: {exc}") from None

    R_list, Z_list, F_list, E, cells, pbcs, Es, Fs = [], [], [], [], [], [], [], []
    info_keys = None
    infos = []
    for fi, ln, na, info, body in frames:
        where = f"{path}: frame {fi} (line {ln + 2})"
        props = info.get("Properties", "species:S:1:pos:R:3")
        spec = props.split(":")
        if len(spec) % 3:
            raise QdynInputError(f"{where}: field 'Properties': malformed {props!r}")
        columns = []
        width = 0
        for j in range(0, len(spec), 3):
            name, typ, cnt = spec[j], spec[j + 1], spec[j + 2]
            if not cnt.isdigit() or int(cnt) < 1:
                raise QdynInputError(f"{where}: field 'Properties': column {name!r} has count {cnt!r}, "
                                     "expected a positive integer")
            columns.append((name, typ, width, int(cnt)))
            width += int(cnt)
        names = [c[0] for c in columns]
        if "species" not in names or "pos" not in names:
            raise QdynInputError(f"{where}: field 'Properties': needs species and pos columns, got {props!r}")
        for name, typ, _, cnt in columns:
            if (name in ("pos", forces_key) or name.startswith("forces_state")) and (typ != "R" or cnt != 3):
                raise QdynInputError(f"{where}: field 'Properties': column {name!r} must be R:3 "
                                     f"(x, y, z), got {typ}:{cnt}")
        rows = []
        for a, row in enumerate(body):
            toks = row.split()
            if len(toks) != width:
                raise QdynInputError(f"{path}: frame {fi} (line {ln + 3 + a}), atom {a}: expected {width} columns "
                                     f"({props}), found {len(toks)}")
            rows.append(toks)
        data = {}
        for name, typ, start, cnt in columns:
            vals = [r[start: start + cnt] for r in rows]
            if name == "species":
                try:
                    data[name] = np.array([elements.atomic_number(int(v[0]) if v[0].isdigit() else v[0]) for v in vals])
                except elements.UnknownElementError as exc:
                    raise QdynInputError(f"{where}: field 'species': {exc}") from None
            elif typ == "R":
                try:
                    data[name] = np.array(vals, dtype=float).reshape(na, cnt)
                except ValueError as exc:
                    raise QdynInputError(f"{where}: field {name!r}: {exc}") from None
        Z_list.append(data["species"])
        R_list.append(units.convert(data["pos"], u["length"], "Angstrom"))
        F_list.append(None if forces_key not in data else units.convert(data[forces_key], u["force"], "eV/Angstrom"))
        fs = sorted((k for k in data if re.fullmatch(r"forces_state\d+", k)), key=lambda k: int(k[12:]))
        Fs.append([units.convert(data[k], u["force"], "eV/Angstrom") for k in fs])
        try:
            E.append(units.convert(float(info[energy_key]), u["energy"], "eV") if energy_key in info else None)
            Es.append(None if "energies_states" not in info else
                      units.convert(np.array(info["energies_states"].split(), dtype=float), u["energy"], "eV"))
        except ValueError as exc:
            raise QdynInputError(f"{where}: field {energy_key!r}: {exc}") from None
        if "Lattice" in info:
            try:
                lat = np.array(info["Lattice"].split(), dtype=float).reshape(3, 3)
            except ValueError:
                raise QdynInputError(f"{where}: field 'Lattice': expected 9 numbers, got {info['Lattice']!r}") from None
            cells.append(units.convert(lat.T, u["length"], "Angstrom"))
            p = info.get("pbc", "T T T")
            pbcs.append([t in ("T", "True", "true", "1") for t in p.split()])
        else:
            cells.append(None)
            pbcs.append(None)
        extra = {k: v for k, v in info.items() if k not in _RESERVED and k != energy_key}
        infos.append(extra)
        info_keys = set(extra) if info_keys is None else info_keys & set(extra)

    n = len(frames)
    A = max(len(z) for z in Z_list)

    def pad(arrs, shape_tail):
        out = np.zeros((n, A) + shape_tail)
        for i, x in enumerate(arrs):
            out[i, : len(x)] = x
        return out

    def all_or_none(vals, name):
        have = [v is not None for v in vals]
        if any(have) and not all(have):
            raise QdynInputError(f"{path}: frame {have.index(False) if have[0] else have.index(True)}, field {name!r}: "
                                 "present in some frames only")
        return all(have)

    Z = np.zeros((n, A), np.int32)
    for i, z in enumerate(Z_list):
        Z[i, : len(z)] = z
    kw = {"R": pad(R_list, (3,)), "Z": Z}
    if all_or_none(E, energy_key):
        kw["E"] = np.array(E)
    if all_or_none(F_list, forces_key):
        kw["F"] = pad(F_list, (3,))
    if all_or_none(cells, "Lattice"):
        kw["cell"] = np.array(cells)
        kw["pbc"] = np.array(pbcs, bool)
    if all_or_none(Es, "energies_states"):
        kw["E_states"] = np.array(Es)
        S = kw["E_states"].shape[1]
        F_states = np.zeros((n, S, A, 3))
        for i, fs in enumerate(Fs):
            if len(fs) != S:
                raise QdynInputError(f"{path}: frame {i}, field 'forces_state*': {len(fs)} columns for {S} states")
            for s in range(S):
                F_states[i, s, : len(fs[s])] = fs[s]
        kw["F_states"] = F_states
    extras = {}
    ignored = sorted(set().union(*infos) - (info_keys or set()))
    for k in sorted(info_keys or ()):
        vals = [_parse_scalar(inf[k]) for inf in infos]
        try:
            arr = np.array(vals)
        except ValueError:
            ignored.append(k)
            continue
        if arr.dtype == object:
            ignored.append(k)
            continue
        extras[k] = arr
    meta = {}
    if "qdyn_metadata" in first:
        try:
            meta = json.loads(first["qdyn_metadata"])
        except json.JSONDecodeError as exc:
            raise QdynInputError(f"{path}: frame 0, field 'qdyn_metadata': invalid JSON ({exc})") from None
    if recorded is None:
        meta = dict(meta, units_in_file=u)
    if ignored:
        meta = dict(meta, extxyz_ignored_keys=ignored)
    return Dataset(**kw, extras=extras, metadata=meta, source=str(path))
