"""Predictions with uncertainties: per-frame energy σ and per-atom force σ for every family.

An :class:`Estimator` says how a trained model estimates its uncertainty (a deep ensemble's
member spread, or a Laplace posterior over its readout) and holds the two calibration factors
fitted on the validation split. :func:`predict_with_uncertainty` evaluates all frames in
chunks through one compiled function: for an ensemble the K members are ``vmap``-ed (one
program computes every member, then mean and spread), for Laplace the readout Jacobians and
their quadratic form with the posterior covariance.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn.data import load_shipped
    >>> from qdyn.models import bpnn
    >>> from qdyn.uncertainty import ensemble_model, predict_with_uncertainty
    >>> ens = ensemble_model(bpnn.build(species=(1, 8), hidden=(4,)), 3)
    >>> pred = predict_with_uncertainty(ens, ens.init(jax.random.PRNGKey(0)), load_shipped("H2O").subset(range(4)))
    >>> pred.E_std.shape, pred.F_std.shape   # eV per frame, eV/Å per atom
    ((4,), (4, 3))
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..models.base import EnergyModel, energy_and_forces_fn
from ..plotting import pyplot, save_figure
from .laplace import LaplacePosterior, laplace_std, readout_jacobians

CHUNK = 64


class Estimator(NamedTuple):
    """How a model's uncertainty is estimated, and its calibration.

    Attributes:
        method: ``"ensemble"`` (spread of the members; the model is an ensemble) or
            ``"laplace"`` (``posterior`` over the readout of a single model).
        energy_scale: factor on σ_E fitted on the validation split (1: uncalibrated).
        force_scale: factor on σ_F fitted on the validation split.
        posterior: the Laplace posterior (method ``"laplace"`` only).
    """

    method: str
    energy_scale: float = 1.0
    force_scale: float = 1.0
    posterior: Optional[LaplacePosterior] = None


class Prediction(NamedTuple):
    """Predictions of every frame with their (calibrated) uncertainties."""

    E: np.ndarray  # [n] eV: the ensemble mean, or the trained model's (Laplace)
    F: np.ndarray  # [n, A, 3] eV/Å
    E_std: np.ndarray  # [n] eV
    F_std: np.ndarray  # [n, A] eV/Å per atom (RMS over its components); 0 on padding atoms


@functools.lru_cache(maxsize=16)
def _ensemble_fn(member_apply):
    """jit of ``(stacked params, R [B,A,3], system) -> (E, F, σ_E [B], σ_F [B,A])``: the
    members ``vmap``-ed inside the frame ``vmap``, mean and population spread over members."""
    ef = jax.vmap(energy_and_forces_fn(member_apply), in_axes=(None, 0, 0))  # frames
    members = jax.vmap(ef, in_axes=(0, None, None))  # members

    def fn(params, R, system):
        E, F = members(params, R, system)  # [K, B], [K, B, A, 3]
        var_F = jnp.mean(jnp.var(F, axis=0), axis=-1)
        return jnp.mean(E, axis=0), jnp.mean(F, axis=0), jnp.std(E, axis=0), jnp.sqrt(var_F)

    return jax.jit(fn)


def _laplace_batch(model, params, posterior, batch):
    E, F, J_E, J_F = readout_jacobians(model, params, batch)
    E_std, F_std = laplace_std(J_E, J_F, posterior.covariance)
    return E, F, E_std, F_std


def default_estimator(model: EnergyModel) -> Estimator:
    """An ensemble's own spread, uncalibrated; a single model has no default."""
    if model.member is None:
        raise ValueError(f"{model.name} is a single model without an uncertainty estimate: train it with "
                         "`uncertainty: {method: ensemble}` or `{method: laplace}`")
    return Estimator("ensemble")


def predict_with_uncertainty(model: EnergyModel, params, ds, estimator: Optional[Estimator] = None, *,
                             chunk: int = CHUNK) -> Prediction:
    """Energies, forces and their σ for every frame of ``ds`` (chunks of ``chunk`` frames,
    one compiled function). ``estimator`` defaults to an ensemble's uncalibrated spread;
    :func:`qdyn.uncertainty.load_estimator` gives a trained run's calibrated one."""
    from ..train.batches import make_batch

    est = default_estimator(model) if estimator is None else estimator
    if est.method == "ensemble":
        if model.member is None:
            raise ValueError(f"{model.name} is not an ensemble; method 'ensemble' needs one")
        fn = functools.partial(_ensemble_fn(model.member.apply), params)
        evaluate = lambda b: fn(b.R, b.system)  # noqa: E731
    elif est.method == "laplace":
        if est.posterior is None:
            raise ValueError("method 'laplace' needs a posterior (qdyn.uncertainty.fit_laplace)")
        evaluate = functools.partial(_laplace_batch, model, params, est.posterior)
        from .laplace import _FRAME_PAIRS_PER_CHUNK  # its Jacobians: the memory cap of fit_laplace

        chunk = max(1, min(chunk, _FRAME_PAIRS_PER_CHUNK // ds.Z.shape[1] ** 2))
    else:
        raise ValueError(f"unknown uncertainty method {est.method!r}: ensemble or laplace")
    parts = []
    for start in range(0, ds.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, ds.n_frames))
        b = make_batch(ds, idx, chunk)
        mask = np.asarray(b.system.mask)[: len(idx)]
        E, F, E_std, F_std = (np.asarray(x)[: len(idx)] for x in evaluate(b))
        parts.append((E, F, E_std, np.where(mask, F_std, 0.0)))
    E, F, E_std, F_std = (np.concatenate(p) for p in zip(*parts))
    return Prediction(E, F, est.energy_scale * E_std, est.force_scale * F_std)


def member_spread(model: EnergyModel, params, R, system) -> dict:
    """An ensemble's uncalibrated spread at one configuration, as ASE result keys:
    ``energy_std`` [eV] and ``forces_std`` [n_atoms] eV/Å; empty for a single model."""
    if model.member is None:
        return {}
    one = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], system)
    _, _, E_std, F_std = _ensemble_fn(model.member.apply)(params, jnp.asarray(R)[None], one)
    return {"energy_std": float(E_std[0]), "forces_std": np.asarray(F_std[0], dtype=float)}


def sigma_error_plot(path, pred: Prediction, ds, *, title: str = "") -> Path:
    """Predicted σ against the actual |error|: energies per frame, forces per atom, with
    the line |error| = σ; log axes."""
    plt = pyplot()

    mask = ds.Z > 0
    pairs = [("energy per frame [eV]", pred.E_std, np.abs(pred.E - ds.E)),
             ("force per atom [eV/Å]", pred.F_std[mask], np.linalg.norm((pred.F - ds.F)[mask], axis=1) / np.sqrt(3))]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, (label, sigma, err) in zip(axes, pairs):
        ax.scatter(sigma, err, s=5, alpha=0.5)
        lo = max(min(sigma.min(), err[err > 0].min() if np.any(err > 0) else 1e-6), 1e-8)
        hi = max(sigma.max(), err.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="|error| = σ")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"predicted σ, {label}")
        ax.set_ylabel("actual |error| (forces: RMS component)")
        ax.legend(loc="upper left")
    axes[0].set_title(f"{title} energies")
    axes[1].set_title(f"{title} forces")
    fig.tight_layout()
    return save_figure(fig, path)
