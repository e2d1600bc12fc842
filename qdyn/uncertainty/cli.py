"""What ``qdyn eval`` adds for uncertainty: calibration on the evaluated frames, per-frame σ,
and the σ-against-error plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .predict import predict_with_uncertainty, sigma_error_plot
from .run import load_estimator, uncertainty_metrics


def per_frame_records(E, ds, E_std=None, F_std=None) -> list[dict]:
    """One JSON record per frame: energy [eV], its error if labelled, and σ where given
    (energy σ [eV], force σ of each real atom [eV/Å])."""
    mask = ds.Z > 0
    out = []
    for i in range(ds.n_frames):
        rec = {"frame": i, "energy_eV": float(E[i])}
        if ds.E is not None:
            rec["energy_error_eV"] = float(E[i] - ds.E[i])
        if E_std is not None:
            rec["energy_std_eV"] = float(E_std[i])
            rec["forces_std_eV_per_A"] = [float(x) for x in F_std[i][mask[i]]]
        out.append(rec)
    return out


def uncertainty_report(run_dir: Path, model, params, ds, *, per_frame: bool, plot: Optional[Path]) -> dict:
    """The ``qdyn eval`` additions (JSON-ready); writes ``plot``. Raises ValueError (one line)
    when a plot is asked of a run without an uncertainty estimate."""
    est = load_estimator(run_dir, params)
    if est is None and model.member is None:
        if plot is not None:
            raise ValueError(f"--plot: {run_dir} has no uncertainty estimate (train with `uncertainty: {{method: "
                             "ensemble}` or `{method: laplace}`)")
        if not per_frame:
            return {}
        from ..train.trainer import predict

        return {"frames": per_frame_records(predict(model, params, ds)[0], ds)}
    pred = predict_with_uncertainty(model, params, ds, est)
    out: dict = {"uncertainty": {"method": "ensemble" if est is None else est.method,
                                 "calibrated": est is not None and (est.energy_scale, est.force_scale) != (1.0, 1.0)}}
    if ds.E is not None and ds.F is not None:
        out["uncertainty"].update(uncertainty_metrics(pred, ds))
    out["uncertainty"]["mean_energy_std_eV"] = float(np.mean(pred.E_std))
    if per_frame:
        out["frames"] = per_frame_records(pred.E, ds, pred.E_std, pred.F_std)
    if plot is not None:
        if ds.E is None or ds.F is None:
            raise ValueError("--plot needs labelled frames (energies and forces) to show the actual error")
        sigma_error_plot(plot, pred, ds, title=model.name)
        out["plot"] = str(plot)
    return out
