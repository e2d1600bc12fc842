"""Uncertainty in a training run: fitted after training, calibrated on the validation split,
reported on the test split, recorded in the run directory and rebuilt from it.

What a run directory holds (``model.json["uncertainty"]``): the method, the ensemble size,
the two calibration factors; for Laplace also the prior precision, the readout leaf names and
``laplace.npz`` (the posterior covariance). ``metrics.json["uncertainty"]`` holds the
calibration measures (:mod:`qdyn.uncertainty.calibration`) of the validation and test splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.io import atomic_savez, load_npz
from ..models.base import EnergyModel
from ..validation import QdynInputError
from . import calibration
from .ensemble import ensemble_model
from .laplace import LaplacePosterior, fit_laplace, readout_paths, split_readout
from .predict import Estimator, Prediction, predict_with_uncertainty

LAPLACE_FILE = "laplace.npz"


def uncertainty_metrics(pred: Prediction, ds) -> dict:
    """Calibration measures of ``pred`` (σ as predicted, calibrated or not) against the labels
    of ``ds``: energies per frame, forces per component and atom."""
    ds.require("E", "F")
    energy = calibration.report(pred.E - ds.E, pred.E_std)
    dF, s, norms, s_atom = calibration.force_errors(pred.F, ds.F, pred.F_std, ds.Z > 0)
    forces = calibration.report(dF, s, abs_err=norms, sigma_rank=s_atom)
    for r in (energy, forces):
        r.pop("scale")
    return {"n_frames": int(ds.n_frames), "energy": energy, "forces": forces}


def calibrate(model: EnergyModel, params, val_ds, estimator: Estimator) -> Estimator:
    """``estimator`` with its two factors fitted on ``val_ds`` (:func:`calibration.fit_scale`)."""
    raw = predict_with_uncertainty(model, params, val_ds, estimator._replace(energy_scale=1.0, force_scale=1.0))
    dF, s, _, _ = calibration.force_errors(raw.F, val_ds.F, raw.F_std, val_ds.Z > 0)
    return estimator._replace(energy_scale=calibration.fit_scale(raw.E - val_ds.E, raw.E_std),
                              force_scale=calibration.fit_scale(dF, s))


def fit_for_run(settings, model: EnergyModel, params, train_ds, val_ds, test_ds, out: Path) -> tuple[dict, dict]:
    """After training: fit (Laplace), calibrate on validation, measure on validation and test.

    Args:
        settings: the training config's ``uncertainty`` section.
    Returns:
        (record for ``model.json``, metrics for ``metrics.json``); writes ``laplace.npz``.
    """
    record: dict = {"method": settings.method}
    if settings.method == "ensemble":
        record["size"] = settings.ensemble.size
        est = Estimator("ensemble")
    else:
        posterior = fit_laplace(model, params, train_ds, prior_precision=settings.laplace.prior_precision)
        atomic_savez(out / LAPLACE_FILE, {"covariance": posterior.covariance})
        record.update(prior_precision=settings.laplace.prior_precision, readout=list(posterior.paths),
                      file=LAPLACE_FILE)
        est = Estimator("laplace", posterior=posterior)
    metrics: dict = {"method": settings.method}
    if val_ds.n_frames:
        est = calibrate(model, params, val_ds, est)
        metrics["calibrated_on"] = "val"
    else:
        metrics["calibrated_on"] = None  # no validation split: σ stays as predicted
    record.update(energy_scale=est.energy_scale, force_scale=est.force_scale)
    metrics.update(energy_scale=est.energy_scale, force_scale=est.force_scale)
    for name, part in (("val", val_ds), ("test", test_ds)):
        if part.n_frames:
            metrics[name] = uncertainty_metrics(predict_with_uncertainty(model, params, part, est), part)
    return record, metrics


def rebuild_model(model: EnergyModel, info: dict) -> EnergyModel:
    """The model a run directory describes: ``model`` (one member), wrapped into an ensemble
    when ``info`` (its ``model.json``) records one."""
    rec = info.get("uncertainty") or {}
    return ensemble_model(model, int(rec["size"])) if rec.get("method") == "ensemble" else model


def load_estimator(run_dir: str | Path, params=None) -> Optional[Estimator]:
    """The calibrated :class:`Estimator` of a finished run, or None if it has none.

    ``params`` (the run's, from :func:`qdyn.train.load_run`) let a Laplace posterior check
    that its readout matches them.
    """
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "model.json").read_text())
    rec = info.get("uncertainty")
    if not rec:
        return None
    try:
        method, scales = rec["method"], (float(rec["energy_scale"]), float(rec["force_scale"]))
    except (KeyError, TypeError, ValueError) as e:
        raise QdynInputError(f"{run_dir / 'model.json'}: bad uncertainty record ({e})") from None
    posterior = None
    if method == "laplace":
        cov = load_npz(run_dir / rec.get("file", LAPLACE_FILE))["covariance"]
        paths = tuple(rec.get("readout", ()))
        if params is not None:
            n = split_readout(params)[0].size
            if tuple(readout_paths(params)) != paths or cov.shape != (n, n):
                raise QdynInputError(f"{run_dir / LAPLACE_FILE}: the posterior (covariance {cov.shape}, readout "
                                     f"{list(paths)}) does not match the model's {n} readout parameters")
        posterior = LaplacePosterior(covariance=np.asarray(cov, float), paths=paths)
    return Estimator(method, *scales, posterior=posterior)
