"""Element table: symbols, atomic numbers and standard atomic masses [amu]."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# IUPAC standard atomic weights (abridged to what force fields in qdyn's scope meet).
_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr"
).split()
_MASSES = (
    0.0, 1.008, 4.0026, 6.94, 9.0122, 10.81, 12.011, 14.007, 15.999, 18.998, 20.180,
    22.990, 24.305, 26.982, 28.085, 30.974, 32.06, 35.45, 39.948, 39.098, 40.078, 44.956,
    47.867, 50.942, 51.996, 54.938, 55.845, 58.933, 58.693, 63.546, 65.38, 69.723, 72.630,
    74.922, 78.971, 79.904, 83.798,
)

SYMBOL_TO_Z = {s: z for z, s in enumerate(_SYMBOLS) if z > 0}


class UnknownElementError(ValueError):
    """An element symbol or atomic number qdyn has no data for."""


def atomic_number(symbol_or_z) -> int:
    """Atomic number of a symbol ('O') or a number (8)."""
    if isinstance(symbol_or_z, str):
        key = symbol_or_z.strip().capitalize()
        if key not in SYMBOL_TO_Z:
            raise UnknownElementError(
                f"unknown element {symbol_or_z!r}; qdyn knows {', '.join(_SYMBOLS[1:])}"
            )
        return SYMBOL_TO_Z[key]
    z = int(symbol_or_z)
    if not 1 <= z < len(_SYMBOLS):
        raise UnknownElementError(f"unknown atomic number {symbol_or_z!r} (known: 1..{len(_SYMBOLS) - 1})")
    return z


def symbol(z) -> str:
    return _SYMBOLS[atomic_number(z)]


def mass(z) -> float:
    """Standard atomic mass [amu]."""
    return _MASSES[atomic_number(z)]


def make_species_table(species) -> jnp.ndarray:
    """int32 [119] lookup: atomic number → index into ``species`` (-1 for elements not in it),
    so that ``table[Z]`` maps per-atom atomic numbers [n] to channel indices inside jit."""
    table = np.full(119, -1, dtype=np.int32)
    for i, z in enumerate(species):
        table[int(z)] = i
    return jnp.asarray(table)
