"""The one place where qdyn converts units.

qdyn's user-facing unit system is **eV, Å, amu, fs** (energies, lengths, masses, times),
with forces in eV/Å and temperatures in K. Everything that enters or leaves the package in
another unit goes through :func:`convert` (or the constants below), so that a Hartree or a
Bohr never leaks into the core.

Example:
    >>> from qdyn import units
    >>> round(units.convert(1.0, "Hartree", "eV"), 6)
    27.211386
    >>> round(units.convert(1.0, "Hartree/Bohr", "eV/Angstrom"), 4)
    51.4221
"""

from __future__ import annotations

import math

# CODATA 2018 values. The codes qdyn reads from use older sets (checked in their source):
# ASE 3.29 (ase.units, __codata_version__) CODATA 2014; PySCF 2.14 (pyscf.data.nist) Bohr
# 0.52917721092 Å (CODATA 2010) and Hartree 27.21138602 eV (CODATA 2014). The differences are
# below 1e-8 relative, far under any label's accuracy; conversions in qdyn use these values.
HARTREE_EV = 27.211386245988
BOHR_ANGSTROM = 0.529177210903
KCAL_PER_MOL_EV = 0.043364104241800934  # 4.184 kJ / N_A / e
KJ_PER_MOL_EV = KCAL_PER_MOL_EV / 4.184
KB_EV_PER_K = 8.617333262e-5  # Boltzmann constant [eV/K]
AMU_KG = 1.66053906660e-27
EV_J = 1.602176634e-19
ANGSTROM_M = 1e-10
HBAR_EV_S = 6.582119569e-16  # reduced Planck constant [eV s] (exact in SI 2019)
SPEED_OF_LIGHT_CM_S = 2.99792458e10  # for wavenumbers [cm^-1]
HBAR_EV_FS = HBAR_EV_S * 1e15  # ħ [eV fs] (electronic equations of motion in surface hopping)
ELECTRON_MASS_AMU = 5.48579909065e-4  # m_e [amu] (CODATA 2018; atomic-unit masses of model problems)
AU_TIME_FS = 2.4188843265857e-2  # atomic unit of time ħ/E_h [fs]
BAR_EV_PER_A3 = 1e5 / EV_J * ANGSTROM_M**3  # 1 bar in eV/Å³ (pressure at the boundary is in bar)
# Coulomb constant e²/(4πε₀) in eV·Å: E = COULOMB_EV_A · q_i q_j / r for charges in e, r in Å
COULOMB_EV_A = EV_J / (4 * math.pi * 8.8541878128e-12 * ANGSTROM_M)
AMU_PER_A3_G_CM3 = AMU_KG * 1e3 / (ANGSTROM_M * 1e2) ** 3  # mass density amu/Å³ -> g/cm³

# In the (eV, Å, amu) system the natural time unit is Å·sqrt(amu/eV) ≈ 10.18 fs. The MD
# code integrates in fs, so this factor appears exactly once, here.
TIME_UNIT_FS = ANGSTROM_M * math.sqrt(AMU_KG / EV_J) * 1e15
# 1 amu·Å²/fs² in eV: kinetic energy ½mv² of velocities in Å/fs (surface hopping propagates
# velocities in Å/fs so that v·d is a rate in 1/fs next to E/ħ).
AMU_A2_FS2_EV = TIME_UNIT_FS**2

_ENERGY = {
    "eV": 1.0,
    "meV": 1e-3,
    "Hartree": HARTREE_EV,
    "Ha": HARTREE_EV,
    "kcal/mol": KCAL_PER_MOL_EV,
    "kJ/mol": KJ_PER_MOL_EV,
}
_LENGTH = {
    "Angstrom": 1.0,
    "Å": 1.0,
    "A": 1.0,
    "Bohr": BOHR_ANGSTROM,
    "nm": 10.0,
    "pm": 0.01,
    "cm": 1e8,  # diffusion coefficients in cm^2/s
}
_TIME = {"fs": 1.0, "ps": 1e3, "ns": 1e6, "s": 1e15, "au_time": AU_TIME_FS}
_MASS = {"amu": 1.0, "Da": 1.0}

_DIMENSIONS = {"energy": _ENERGY, "length": _LENGTH, "time": _TIME, "mass": _MASS}


class UnitError(ValueError):
    """A unit that qdyn does not know, or a conversion between different dimensions."""


def _factor(unit: str) -> tuple[dict[str, int], float]:
    """Return (dimension signature, factor to qdyn units) for e.g. 'Hartree/Bohr'."""
    if not isinstance(unit, str) or not unit.strip():
        raise UnitError(f"unit must be a non-empty string, got {unit!r}")
    # 'kcal/mol' and 'kJ/mol' are single energy units, not a quotient.
    text = unit.replace("kcal/mol", "kcal_mol").replace("kJ/mol", "kJ_mol")
    num, *dens = text.split("/")
    signature: dict[str, int] = {}
    factor = 1.0
    for part, sign in [(num, 1)] + [(d, -1) for d in dens]:
        for token in filter(None, (t.strip() for t in part.split("*"))):
            token, _, p = token.partition("^")
            power = sign * (int(p) if p else 1)
            token = token.replace("_mol", "/mol")
            for dim, table in _DIMENSIONS.items():
                if token in table:
                    signature[dim] = signature.get(dim, 0) + power
                    factor *= table[token] ** power
                    break
            else:
                known = sorted({u for t in _DIMENSIONS.values() for u in t})
                raise UnitError(f"unknown unit {token!r} in {unit!r}; known units: {known}")
    return {k: v for k, v in signature.items() if v != 0}, factor


def convert(value, from_unit: str, to_unit: str):
    """Convert ``value`` (scalar or array) from ``from_unit`` to ``to_unit``.

    Units combine with ``/``, ``*`` and ``^``: ``"Hartree/Bohr"``, ``"eV/Angstrom^2"``.
    Raises :class:`UnitError` for unknown units or mismatched dimensions.
    """
    sig_a, fa = _factor(from_unit)
    sig_b, fb = _factor(to_unit)
    if sig_a != sig_b:
        raise UnitError(
            f"cannot convert {from_unit!r} ({sig_a}) to {to_unit!r} ({sig_b}): different dimensions"
        )
    return value * (fa / fb)


def temperature_to_energy(T_kelvin):
    """k_B·T in eV."""
    return KB_EV_PER_K * T_kelvin
