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


MAD_TO_STD = 1.482602218505602
"""A normal distribution's standard deviation per median absolute deviation, 1 / Φ⁻¹(3/4)."""

MEDIAN_OF_CHI2_1 = 0.45493642311957283
"""The median of the square of a standard normal variable, Φ⁻¹(3/4)²."""


def robust_std(x: np.ndarray, axis=None) -> np.ndarray:
    """The standard deviation estimated from the median absolute deviation: equal to ``np.std``
    for normal data, unmoved by a few values far off (where one such value can double np.std)."""
    x = np.asarray(x, dtype=float)
    return MAD_TO_STD * np.median(np.abs(x - np.median(x, axis=axis, keepdims=True)), axis=axis)


def robust_rms(x: np.ndarray) -> float:
    """The RMS of zero-mean values estimated from the median of their squares (normal data:
    equal to the RMS)."""
    return float(np.sqrt(np.median(np.asarray(x, dtype=float) ** 2) / MEDIAN_OF_CHI2_1))
