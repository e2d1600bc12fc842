"""Calibration of predicted uncertainties: one scale factor, and three measures of quality.

A model predicts σ; its errors are ``err``. After fitting one factor ``s`` on the validation
split (:func:`fit_scale`), the test split reports

* the **Spearman rank correlation** of σ with |err| (does a larger σ mean a larger error?
  Unchanged by ``s``);
* the **miscalibration area** (Tran et al., Mach. Learn.: Sci. Technol. 1, 025006, 2020):
  for each probability p the fraction of errors inside the central p-interval of N(0, (sσ)²)
  against p itself, integrated over p in [0, 1]; 0 is perfect, 0.5 the worst;
* the **Gaussian NLL** (mean negative log-likelihood of the errors under N(0, (sσ)²), in nats,
  errors in eV or eV/Å; lower is better).

Energies are judged per frame; forces per Cartesian component against the atom's σ (the
Spearman correlation per atom: σ of the atom against the norm of its force error).
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-300


def _checked(err, sigma):
    err, sigma = np.broadcast_arrays(np.asarray(err, float), np.asarray(sigma, float))
    if err.size == 0:
        raise ValueError("no errors to calibrate against")
    if not (np.all(np.isfinite(err)) and np.all(np.isfinite(sigma))) or np.any(sigma < 0):
        raise ValueError("errors and σ must be finite and σ ≥ 0")
    return err.ravel(), np.maximum(sigma.ravel(), _TINY)


def fit_scale(err, sigma) -> float:
    """The factor s minimising the Gaussian NLL of ``err`` under N(0, (s·σ)²):
    ``s² = mean(err² / σ²)`` (its closed-form maximum-likelihood value)."""
    err, sigma = _checked(err, sigma)
    return float(np.sqrt(np.mean((err / sigma) ** 2)))


def gaussian_nll(err, sigma) -> float:
    """Mean of ``½ log(2π σ²) + err² / (2 σ²)`` [nats]."""
    err, sigma = _checked(err, sigma)
    return float(np.mean(0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * (err / sigma) ** 2))


def calibration_curve(err, sigma, n: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """(expected p [n], observed fraction [n]): the fraction of |err| ≤ σ·Φ⁻¹((1+p)/2)."""
    err, sigma = _checked(err, sigma)
    p = np.linspace(0.0, 1.0, n)
    z = np.abs(err) / sigma
    from scipy import stats  # here: importing scipy.stats costs ~1 s of every qdyn command's start

    bounds = stats.norm.ppf(0.5 + 0.5 * p)  # inf at p = 1: every error inside
    observed = np.mean(z[None, :] <= bounds[:, None], axis=1)
    return p, observed


def miscalibration_area(err, sigma, n: int = 101) -> float:
    """∫₀¹ |observed(p) − p| dp by the trapezoidal rule on ``n`` points."""
    p, observed = calibration_curve(err, sigma, n)
    return float(np.trapezoid(np.abs(observed - p), p))


def spearman(sigma, abs_err) -> float:
    """Spearman rank correlation of predicted σ with the size of the actual error."""
    sigma, abs_err = np.asarray(sigma, float).ravel(), np.asarray(abs_err, float).ravel()
    if np.ptp(sigma) == 0 or np.ptp(abs_err) == 0:
        return float("nan")  # a constant has no rank order; say so instead of a number
    from scipy import stats

    return float(stats.spearmanr(sigma, abs_err).statistic)


def force_errors(F_pred, F_true, F_std, mask):
    """(component errors [m, 3], per-atom σ [m, 1], per-atom error norms [m], per-atom σ [m])
    of the m real atoms."""
    dF = (np.asarray(F_pred) - np.asarray(F_true))[mask]
    s = np.asarray(F_std)[mask]
    return dF, s[:, None], np.linalg.norm(dF, axis=1), s


def report(err, sigma, abs_err=None, sigma_rank=None, *, scale: float = 1.0) -> dict:
    """Calibration measures of ``err`` under σ·``scale``; Spearman on (``sigma_rank``,
    ``abs_err``) when given (per-atom forces), else on (σ, |err|)."""
    sigma = np.asarray(sigma, float) * scale
    rho = spearman(sigma if sigma_rank is None else sigma_rank, np.abs(err) if abs_err is None else abs_err)
    return {"scale": float(scale), "spearman": rho, "miscalibration_area": miscalibration_area(err, sigma),
            "nll": gaussian_nll(err, sigma), "mean_sigma": float(np.mean(sigma)),
            "rmse": float(np.sqrt(np.mean(np.asarray(err, float) ** 2)))}
