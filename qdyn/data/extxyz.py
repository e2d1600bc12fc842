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
from typing import NamedTuple, Optional, Sequence

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

    first = record(frames[0].info)
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


class _RawFrame(NamedTuple):
    index: int
    line: int  # 0-based line of the atom count
    n_atoms: int
    info: dict  # the parsed comment line
    body: list[str]


class _Frame(NamedTuple):
    Z: np.ndarray
    R: np.ndarray
    F: Optional[np.ndarray]
    E: Optional[float]
    E_states: Optional[np.ndarray]
    F_states: list[np.ndarray]
    cell: Optional[np.ndarray]
    pbc: Optional[list[bool]]
    extra: dict


def read_extxyz(path: Path, *, declared: Optional[dict], energy_key: str = "energy", forces_key: str = "forces") -> Dataset:
    """Read extended XYZ; see module docstring for units."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise QdynInputError(f"{path}: not a text file ({exc})") from None
    raw = _split_frames(path, text.splitlines())
    recorded = _recorded_units(path, raw)
    u = _resolve_units(path, raw, recorded, declared, energy_key, forces_key)
    frames = [_parse_frame(path, f, u, energy_key, forces_key) for f in raw]
    kw = _stack_labels(path, frames, energy_key, forces_key)
    extras, ignored = _stack_extras(frames)
    meta = {}
    if "qdyn_metadata" in raw[0].info:
        try:
            meta = json.loads(raw[0].info["qdyn_metadata"])
        except json.JSONDecodeError as exc:
            raise QdynInputError(f"{path}: frame 0, field 'qdyn_metadata': invalid JSON ({exc})") from None
    if recorded is None:
        meta = dict(meta, units_in_file=u)
    if ignored:
        meta = dict(meta, extxyz_ignored_keys=ignored)
    return Dataset(**kw, extras=extras, metadata=meta, source=str(path))


def _split_frames(path: Path, lines: list[str]) -> list[_RawFrame]:
    """Cut the file into frames (count line, comment line, atom lines), checking counts."""
    frames: list[_RawFrame] = []
    ln = 0
    while ln < len(lines):
        if not lines[ln].strip():
            ln += 1
            continue
        where = f"{path}: frame {len(frames)} (line {ln + 1})"
        try:
            na = int(lines[ln].strip())
        except ValueError:
            raise QdynInputError(f"{where}: field 'n_atoms': expected an atom count, got {lines[ln][:40]!r}") from None
        if na < 1:
            raise QdynInputError(f"{where}: field 'n_atoms': expected a positive atom count, got {na}")
        if ln + 1 >= len(lines):
            raise QdynInputError(f"{where}: truncated file: missing the comment line")
        body = lines[ln + 2: ln + 2 + na]
        if len(body) < na:
            raise QdynInputError(f"{where}: truncated file: expected {na} atom lines, found {len(body)}")
        frames.append(_RawFrame(len(frames), ln, na, _parse_comment(lines[ln + 1], where), body))
        ln += 2 + na
    if not frames:
        raise QdynInputError(f"{path}: no frames (empty file)")
    return frames


def _resolve_units(path: Path, frames: list[_RawFrame], recorded: Optional[dict], declared: Optional[dict],
                   energy_key: str, forces_key: str) -> dict:
    """The units to read the file in: recorded ones (which must agree with declared ones),
    else declared ones, else ASE's convention with a notice."""
    if recorded is not None and declared is not None:
        for k, v in declared.items():
            if k in recorded and units.convert(1.0, v, recorded[k]) != 1.0:
                raise QdynInputError(f"{path}: field '{k}_unit': you declared {v!r} but the file records {recorded[k]!r}")
    u = {**(declared or {}), **(recorded or {})}
    # Only the units of quantities the file holds must be known.
    has_energy = any(energy_key in f.info or "energies_states" in f.info for f in frames)
    has_forces = any(c == forces_key or c.startswith("forces_state") for f in frames
                     for c in f.info.get("Properties", "").split(":"))
    need = ["length"] + (["energy"] if has_energy else []) + (["force"] if has_forces else [])
    missing = [k for k in need if k not in u]
    if missing:
        # ASE's convention (what ASE, MACE, NequIP and most codes write); the plausibility
        # checks catch the Hartree/Bohr files this would misread.
        u.update({k: _ASE_UNITS[k] for k in missing})
        _log.warning(f"notice: {path} records no units; reading it as ASE's convention (eV, Angstrom, eV/Angstrom) "
                     "- declare --energy-unit/--length-unit if it is not")
    try:
        for k, dim in (("energy", "eV"), ("length", "Angstrom"), ("force", "eV/Angstrom")):
            if k in u:
                units.convert(1.0, u[k], dim)
    except units.UnitError as exc:
        raise QdynInputError(f"{path}: recorded units: {exc}") from None
    return u


def _columns(props: str, where: str, forces_key: str) -> tuple[list[tuple[str, str, int, int]], int]:
    """``Properties=name:type:count:...`` as (name, type, first column, count) and the width."""
    spec = props.split(":")
    if len(spec) % 3:
        raise QdynInputError(f"{where}: field 'Properties': malformed {props!r}")
    columns, width = [], 0
    for name, typ, cnt in zip(spec[0::3], spec[1::3], spec[2::3]):
        if not cnt.isdigit() or int(cnt) < 1:
            raise QdynInputError(f"{where}: field 'Properties': column {name!r} has count {cnt!r}, "
                                 "expected a positive integer")
        if (name in ("pos", forces_key) or name.startswith("forces_state")) and (typ != "R" or cnt != "3"):
            raise QdynInputError(f"{where}: field 'Properties': column {name!r} must be R:3 (x, y, z), got {typ}:{cnt}")
        columns.append((name, typ, width, int(cnt)))
        width += int(cnt)
    if not {"species", "pos"} <= {c[0] for c in columns}:
        raise QdynInputError(f"{where}: field 'Properties': needs species and pos columns, got {props!r}")
    return columns, width


def _atom_columns(path: Path, f: _RawFrame, where: str, forces_key: str) -> dict:
    """The frame's per-atom columns: species as atomic numbers, real columns as arrays."""
    props = f.info.get("Properties", "species:S:1:pos:R:3")
    columns, width = _columns(props, where, forces_key)
    rows = []
    for a, row in enumerate(f.body):
        toks = row.split()
        if len(toks) != width:
            raise QdynInputError(f"{path}: frame {f.index} (line {f.line + 3 + a}), atom {a}: expected {width} "
                                 f"columns ({props}), found {len(toks)}")
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
                data[name] = np.array(vals, dtype=float).reshape(f.n_atoms, cnt)
            except ValueError as exc:
                raise QdynInputError(f"{where}: field {name!r}: {exc}") from None
    return data


def _parse_frame(path: Path, f: _RawFrame, u: dict, energy_key: str, forces_key: str) -> _Frame:
    """One frame in eV, Å, eV/Å."""
    where = f"{path}: frame {f.index} (line {f.line + 2})"
    info = f.info
    data = _atom_columns(path, f, where, forces_key)
    force = lambda x: units.convert(x, u["force"], "eV/Angstrom")  # noqa: E731
    state_cols = sorted((k for k in data if re.fullmatch(r"forces_state\d+", k)), key=lambda k: int(k[12:]))
    try:
        E = units.convert(float(info[energy_key]), u["energy"], "eV") if energy_key in info else None
        E_states = (None if "energies_states" not in info else
                    units.convert(np.array(info["energies_states"].split(), dtype=float), u["energy"], "eV"))
    except ValueError as exc:
        raise QdynInputError(f"{where}: field {energy_key!r}: {exc}") from None
    cell = pbc = None
    if "Lattice" in info:
        try:
            lattice = np.array(info["Lattice"].split(), dtype=float).reshape(3, 3)
        except ValueError:
            raise QdynInputError(f"{where}: field 'Lattice': expected 9 numbers, got {info['Lattice']!r}") from None
        cell = units.convert(lattice.T, u["length"], "Angstrom")
        pbc = [t in ("T", "True", "true", "1") for t in info.get("pbc", "T T T").split()]
    return _Frame(Z=data["species"], R=units.convert(data["pos"], u["length"], "Angstrom"),
                  F=force(data[forces_key]) if forces_key in data else None, E=E, E_states=E_states,
                  F_states=[force(data[k]) for k in state_cols], cell=cell, pbc=pbc,
                  extra={k: v for k, v in info.items() if k not in _RESERVED and k != energy_key})


def _stack_labels(path: Path, frames: list[_Frame], energy_key: str, forces_key: str) -> dict:
    """Dataset arrays padded to the largest frame; a label present in some frames only is refused."""
    n, A = len(frames), max(len(f.Z) for f in frames)

    def pad(arrs, shape_tail, dtype=float):
        out = np.zeros((n, A) + shape_tail, dtype)
        for i, x in enumerate(arrs):
            out[i, : len(x)] = x
        return out

    def in_all(field, name):
        have = [getattr(f, field) is not None for f in frames]
        if any(have) and not all(have):
            raise QdynInputError(f"{path}: frame {have.index(False) if have[0] else have.index(True)}, field {name!r}: "
                                 "present in some frames only")
        return all(have)

    kw = {"R": pad([f.R for f in frames], (3,)), "Z": pad([f.Z for f in frames], (), np.int32)}
    if in_all("E", energy_key):
        kw["E"] = np.array([f.E for f in frames])
    if in_all("F", forces_key):
        kw["F"] = pad([f.F for f in frames], (3,))
    if in_all("cell", "Lattice"):
        kw["cell"] = np.array([f.cell for f in frames])
        kw["pbc"] = np.array([f.pbc for f in frames], bool)
    if in_all("E_states", "energies_states"):
        kw["E_states"] = np.array([f.E_states for f in frames])
        S = kw["E_states"].shape[1]
        kw["F_states"] = np.zeros((n, S, A, 3))
        for i, f in enumerate(frames):
            if len(f.F_states) != S:
                raise QdynInputError(f"{path}: frame {i}, field 'forces_state*': {len(f.F_states)} columns for {S} states")
            for s, Fs in enumerate(f.F_states):
                kw["F_states"][i, s, : len(Fs)] = Fs
    return kw


def _stack_extras(frames: list[_Frame]) -> tuple[dict, list[str]]:
    """Per-frame comment keys every frame has, as arrays; the names of those left out."""
    common = set.intersection(*(set(f.extra) for f in frames))
    ignored = sorted(set().union(*(f.extra for f in frames)) - common)
    extras = {}
    for k in sorted(common):
        try:
            arr = np.array([_parse_scalar(f.extra[k]) for f in frames])
        except ValueError:
            arr = None
        if arr is None or arr.dtype == object:
            ignored.append(k)
        else:
            extras[k] = arr
    return extras, ignored
