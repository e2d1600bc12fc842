"""Element table: symbols, atomic numbers, standard atomic masses [amu] and covalent radii [Å]."""

from __future__ import annotations

import ase.data
import jax.numpy as jnp
import numpy as np

# One element table for qdyn and ASE: symbols and masses of every element, from ase.data
# (masses: IUPAC 2016 standard atomic weights, identical to qdyn's former table for
# H, Li, C, N, O, Ca; covalent radii: Cordero et al., Dalton Trans. 2008, which covers H–Cm).
_SYMBOLS = tuple(ase.data.chemical_symbols)
_MASSES = tuple(float(m) for m in ase.data.atomic_masses)
_LAST_COVALENT_RADIUS = 96  # Cm; ASE fills the heavier elements with a placeholder

SYMBOL_TO_Z = {s: z for z, s in enumerate(_SYMBOLS) if z > 0}


class UnknownElementError(ValueError):
    """An element symbol or atomic number qdyn has no data for."""


def atomic_number(symbol_or_z) -> int:
    """Atomic number of a symbol ('O') or a number (8)."""
    if isinstance(symbol_or_z, str):
        key = symbol_or_z.strip().capitalize()
        if key not in SYMBOL_TO_Z:
            raise UnknownElementError(
                f"unknown element {symbol_or_z!r}; qdyn knows the element symbols H to {_SYMBOLS[-1]}"
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


def covalent_radius(z) -> float:
    """Covalent radius [Å] (Cordero et al. 2008), for finding molecules and clashes."""
    z = atomic_number(z)
    if z > _LAST_COVALENT_RADIUS:
        raise UnknownElementError(f"no covalent radius for {symbol(z)} (known up to {symbol(_LAST_COVALENT_RADIUS)})")
    return float(ase.data.covalent_radii[z])


def make_species_table(species) -> jnp.ndarray:
    """int32 [119] lookup: atomic number → index into ``species`` (-1 for elements not in it),
    so that ``table[Z]`` maps per-atom atomic numbers [n] to channel indices inside jit."""
    table = np.full(119, -1, dtype=np.int32)
    for i, z in enumerate(species):
        table[int(z)] = i
    return jnp.asarray(table)
