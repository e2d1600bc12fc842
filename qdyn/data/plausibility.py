"""Plausibility checks: catch unit mistakes and absurd inputs before they train or run.

A dataset whose energies are in Hartree but were declared (or defaulted) as eV is read
without complaint by every format: the numbers are just numbers. These checks compare what
was read (already converted to eV and Å) with what chemistry allows, and refuse with one
line that names the file, the frame, the field and the likely mistake. Each can be switched
off (``check_plausibility=False`` in the Python API, ``data.check_plausibility: false`` in a
training config, ``--no-plausibility-check`` on the command line) for the rare legitimate
exotic input.

What is checked, in qdyn's units (eV, Å, K):

* **Total energies against the all-electron scale.** For each frame the energy is divided by
  the sum of the free atoms' Hartree-Fock energies of its composition. All-electron labels
  (HF, DFT, MP2, CC) give a ratio near 1; semi-empirical labels (xTB), energies relative to a
  reference and atomisation energies give small ratios. A ratio near 1/27.2 is what all-electron
  Hartree data read as eV gives (water at -76 "eV"), near 23 or 96 kcal/mol or kJ/mol read
  as eV; any ratio far beyond 1 is more binding than the electrons of the atoms can give.
* **Force scale**: an RMS force beyond :data:`MAX_FORCE_RMS` eV/Å in a frame.
* **Coordinates** beyond :data:`MAX_COORDINATE` Å from the origin.
* **Temperatures** (MD, sampling) beyond :data:`MAX_TEMPERATURE` K.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import units
from ..validation import MAX_COORDINATE_ANGSTROM, QdynInputError

__all__ = ["check_dataset", "check_positions_scale", "check_temperature", "MAX_COORDINATE",
           "MAX_FORCE_RMS", "MAX_TEMPERATURE", "OVERRIDE_HINT"]

# Hartree-Fock limit energies of the neutral free atoms H..Kr [Hartree] (Clementi & Roetti,
# At. Data Nucl. Data Tables 14, 177 (1974)); only their scale matters here (a ±10 % band).
_ATOM_HF_HARTREE = np.array([
    0.0, -0.5, -2.8617, -7.4327, -14.5730, -24.5291, -37.6886, -54.4009, -74.8094, -99.4093, -128.5471,
    -161.8589, -199.6146, -241.8767, -288.8544, -340.7188, -397.5049, -459.4821, -526.8175, -599.1648,
    -676.7582, -759.7357, -848.4060, -942.8843, -1043.3564, -1149.8663, -1262.4437, -1381.4146,
    -1506.8709, -1638.9637, -1777.8481, -1923.2610, -2075.3597, -2234.2387, -2399.8676, -2572.4413,
    -2752.0550,
])

# (ratio of the energy to the all-electron scale, the mistake that produces it)
_UNIT_MISTAKES = (
    (units.convert(1.0, "Hartree", "eV") ** -1, "Hartree-scale energies declared as eV"),
    (units.convert(1.0, "kcal/mol", "eV") ** -1, "kcal/mol energies declared as eV"),
    (units.convert(1.0, "kJ/mol", "eV") ** -1, "kJ/mol energies declared as eV"),
)
_BAND = 0.10  # relative half-width around each suspicious ratio (composition estimate ± atomisation)
_MAX_RATIO = 1.5  # more binding than this times the atoms' electrons is no chemistry in eV

MAX_FORCE_RMS = 100.0  # eV/Å: RMS of a frame's forces; bonds break well below this
MAX_COORDINATE = MAX_COORDINATE_ANGSTROM  # Å: one micrometre from the origin
MAX_TEMPERATURE = 5.0e4  # K: molecules are atomised long before; an MD here is a typo
OVERRIDE_HINT = "(if this is really intended, turn the check off: --no-plausibility-check, data.check_plausibility: false)"


def _refuse(where: str, message: str) -> QdynInputError:
    return QdynInputError(f"{where}: {message} {OVERRIDE_HINT}")


def all_electron_scale(Z) -> np.ndarray:
    """[n] eV: the summed free-atom Hartree-Fock energies of each frame's atoms (Z [n, A], 0 = padding)."""
    Z = np.asarray(Z, int)
    return units.convert(_ATOM_HF_HARTREE[np.clip(Z, 0, len(_ATOM_HF_HARTREE) - 1)].sum(-1), "Hartree", "eV")


def check_energies(E, Z, *, source: str, field: str = "E", ok=None) -> None:
    """Refuse total energies [eV] whose scale matches a unit mistake or no chemistry."""
    E = np.asarray(E, float)
    ok = np.isfinite(E) if ok is None else (np.asarray(ok, bool) & np.isfinite(E))
    if not ok.any():
        return
    scale = all_electron_scale(Z)
    ratio = np.where(ok, E / scale, 0.0)
    # A unit mistake scales every frame alike: judge the median, name the first frame.
    med = float(np.median(ratio[ok]))
    for target, mistake in _UNIT_MISTAKES:
        if abs(med / target - 1.0) < _BAND:
            frame = int(np.flatnonzero(ok)[0])
            raise _refuse(f"{source}: frame {frame}, field {field!r}",
                          f"energy {E[frame]:.6g} eV is {ratio[frame]:.3g} times the all-electron energy of its "
                          f"atoms ({scale[frame]:.6g} eV), as {mistake} gives; declare the right unit "
                          "(--energy-unit / energy_unit=)")
    for frame in np.flatnonzero(ok):
        r = ratio[frame]
        if abs(r) > _MAX_RATIO:
            raise _refuse(f"{source}: frame {frame}, field {field!r}",
                          f"energy {E[frame]:.6g} eV is {r:.3g} times the total electronic energy of its atoms "
                          f"({scale[frame]:.6g} eV): far outside any chemistry in eV; wrong energy unit?")


def check_forces(F, mask, *, source: str, field: str = "F", ok=None) -> None:
    """Refuse frames whose RMS force [eV/Å] is beyond :data:`MAX_FORCE_RMS`."""
    F = np.asarray(F, float)
    m = np.asarray(mask, bool)
    n_real = np.maximum(m.sum(1), 1)
    sq = np.where(m[..., None] & np.isfinite(F), F, 0.0) ** 2
    rms = np.sqrt(sq.sum((1, 2)) / (3 * n_real))
    sel = np.ones(len(rms), bool) if ok is None else np.asarray(ok, bool)
    bad = np.flatnonzero((rms > MAX_FORCE_RMS) & sel)
    if len(bad):
        f = int(bad[0])
        raise _refuse(f"{source}: frame {f}, field {field!r}",
                      f"RMS force {rms[f]:.4g} eV/Å is beyond any chemistry (limit {MAX_FORCE_RMS:g} eV/Å); "
                      "wrong energy or length unit?")


def check_positions_scale(R, mask=None, *, source: str, field: str = "R") -> None:
    """Refuse coordinates [Å] farther than :data:`MAX_COORDINATE` from the origin.

    ``R`` is [A, 3] or [n, A, 3]; ``mask`` (same leading shape) marks real atoms.
    """
    R = np.asarray(R, float)
    frames = R if R.ndim == 3 else R[None]
    m = np.ones(frames.shape[:2], bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), frames.shape[:2])
    far = (np.abs(np.where(np.isfinite(frames), frames, 0.0)) > MAX_COORDINATE).any(-1) & m
    if far.any():
        f, a = (int(x) for x in np.argwhere(far)[0])
        where = f"{source}: frame {f}, field {field!r}" if R.ndim == 3 else f"{source}: field {field!r}"
        raise _refuse(where, f"atom {a} is at {np.abs(frames[f, a]).max():.4g} Å from the origin "
                             f"(limit {MAX_COORDINATE:g} Å); wrong length unit or a corrupt coordinate?")


def check_temperature(T_kelvin: float, *, where: str = "temperature") -> None:
    """Refuse a temperature [K] that is negative, non-finite or beyond :data:`MAX_TEMPERATURE`."""
    T = float(T_kelvin)
    if not np.isfinite(T) or T < 0:
        raise QdynInputError(f"{where}: {T:g} K is not a temperature")
    if T > MAX_TEMPERATURE:
        raise _refuse(where, f"{T:g} K is beyond any chemistry (limit {MAX_TEMPERATURE:g} K)")


def check_dataset(ds, *, source: Optional[str] = None) -> None:
    """All data checks on a :class:`~qdyn.data.Dataset` (eV, Å); frames recorded as failed
    (``extras['converged']`` False) are skipped. Raises :class:`QdynInputError`."""
    source = source or ds.source
    ok = ds.converged
    check_positions_scale(ds.R, ds.mask, source=source)
    if ds.E is not None:
        check_energies(ds.E, ds.Z, source=source, ok=ok)
    if ds.E_states is not None:
        check_energies(ds.E_states[:, 0], ds.Z, source=source, field="E_states", ok=ok)
    if ds.F is not None:
        check_forces(ds.F, ds.mask, source=source, ok=ok)
