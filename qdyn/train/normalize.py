"""Energy normalisation: per-species reference energies and an output scale from data."""

from __future__ import annotations

import numpy as np


def species_reference_energies(Z: np.ndarray, E: np.ndarray, species) -> np.ndarray:
    """Least-squares e_s with E ≈ Σ_s n_s e_s (n_s = count of species s per frame) [eV].

    With a single composition the system is rank one; lstsq then returns the minimum-norm
    solution, which still reproduces the mean energy exactly.
    """
    counts = np.stack([(Z == z).sum(axis=1) for z in species], axis=1).astype(float)
    e, *_ = np.linalg.lstsq(counts, E, rcond=None)
    return e


def force_rms(F: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sqrt(np.mean(F[mask] ** 2)))
