"""Invariant descriptors of atomic environments."""

from .symmetry_functions import SymmetryFunctions, cutoff_fn, pair_geometry

__all__ = ["SymmetryFunctions", "cutoff_fn", "pair_geometry"]
