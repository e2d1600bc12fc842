"""Uncertainty for every model family: deep ensembles trained in one run and evaluated in
one compiled call, a last-layer Laplace approximation fitted after training, calibration on
the validation split and calibration measures on the test split (docs/uncertainty.md)."""

from .calibration import fit_scale, gaussian_nll, miscalibration_area, spearman
from .ensemble import MemberAxis, ensemble_model, member_keys, stack, unstack
from .laplace import LaplacePosterior, fit_laplace, readout_mask
from .predict import Estimator, Prediction, predict_with_uncertainty, sigma_error_plot
from .run import calibrate, load_estimator, uncertainty_metrics

__all__ = ["Estimator", "LaplacePosterior", "MemberAxis", "Prediction", "calibrate", "ensemble_model",
           "fit_laplace", "fit_scale", "gaussian_nll", "load_estimator", "member_keys", "miscalibration_area",
           "predict_with_uncertainty", "readout_mask", "sigma_error_plot", "spearman", "stack",
           "uncertainty_metrics", "unstack"]
