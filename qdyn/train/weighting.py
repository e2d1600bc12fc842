"""Energy-based frame weights: frames far above the lowest frame of their composition count less.

A training set that covers bond breaking (``H2O_stretched``: O–H out to 2 Å, energies up to
9 eV above the minimum) next to near-equilibrium frames asks one model for both; with every
frame weighted alike, the large residuals of the high-energy frames rule the loss and the
region dynamics visits most is fitted worse. The weight of a frame with energy E is

    w = s / (s + E − E_min),

E_min the lowest training energy of frames with the same composition (atoms of each
species) and s the scale ``loss.frame_weight_scale_eV``: 1 at the minimum, ½ at s above it,
falling as s / ΔE far above, so high frames still count (the rational weight of
permutationally invariant polynomial fits, Braams & Bowman, Int. Rev. Phys. Chem. 28, 577
(2009)). The weights are normalised to mean 1 over the training frames: the trainer's loss is a
weighted mean per batch either way, and influence functions (``qdyn.influence``) keep their
1/n per frame.

Other frames (validation, a run's query data) are weighed against the training minima and
normalisation; a composition the training frames lack is measured from its own lowest frame.

Per-source weights (``data.weights``, one per entry of a ``data.path`` list: the config-type
weights of other force-field codes) multiply the energy-based ones; the product is normalised
to mean 1 the same way.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from .config import ConfigError


class FrameWeighting(NamedTuple):
    """What the weights of any frame are computed from (fixed on the training frames)."""

    scale_eV: Optional[float]  # None: no energy-based part
    minima: dict  # composition key -> lowest training energy [eV]
    norm: float  # mean raw weight of the training frames
    source_weights: Optional[tuple] = None  # weight of each data source (extras[SOURCE_KEY] indexes it)


def _ground_energies(ds) -> np.ndarray:
    """Energies [n] eV a frame is weighed by: E, or the lowest state of multistate labels."""
    if ds.E is not None:
        return np.asarray(ds.E, dtype=float)
    ds.require("E_states")
    return np.asarray(ds.E_states, dtype=float)[:, 0]


def _compositions(Z: np.ndarray) -> list[bytes]:
    """One hashable key per frame: its count of atoms of every element (padding excluded)."""
    return [np.bincount(z[z > 0], minlength=119).tobytes() for z in np.asarray(Z)]


def _by_energy(E: np.ndarray, keys: list[bytes], minima: dict, scale_eV: Optional[float]) -> np.ndarray:
    if scale_eV is None:
        return np.ones(len(E))
    own = {}
    for k, e in zip(keys, E):  # compositions the training frames lack: their own lowest frame
        if k not in minima:
            own[k] = min(own.get(k, np.inf), e)
    e_min = np.array([minima.get(k, own.get(k)) for k in keys])
    return scale_eV / (scale_eV + np.maximum(E - e_min, 0.0))


def _by_source(ds, source_weights: Optional[tuple]) -> np.ndarray:
    if source_weights is None:
        return np.ones(ds.n_frames)
    from .data import SOURCE_KEY

    if SOURCE_KEY not in ds.extras:
        raise ConfigError(f"data.weights: {ds.source} does not record which source each frame came from; per-source "
                          "weights need the data loaded from the data.path list (not a dataset passed in memory)")
    return np.asarray(source_weights, dtype=float)[np.asarray(ds.extras[SOURCE_KEY], dtype=int)]


def _raw(weighting: FrameWeighting, ds) -> np.ndarray:
    by_energy = _by_energy(_ground_energies(ds), _compositions(ds.Z), weighting.minima, weighting.scale_eV)
    return by_energy * _by_source(ds, weighting.source_weights)


def fit_frame_weighting(train_ds, scale_eV: Optional[float], source_weights=None) -> FrameWeighting:
    """The weighting of a training set: its lowest energy per composition (with a ``scale_eV``),
    the per-source weights, and the mean raw weight."""
    minima: dict = {}
    if scale_eV is not None:
        for k, e in zip(_compositions(train_ds.Z), _ground_energies(train_ds)):
            minima[k] = min(minima.get(k, np.inf), e)
    sources = None if source_weights is None else tuple(float(w) for w in source_weights)
    unnormalised = FrameWeighting(None if scale_eV is None else float(scale_eV), minima, 1.0, sources)
    return unnormalised._replace(norm=float(np.mean(_raw(unnormalised, train_ds))))


def frame_weights(weighting: Optional[FrameWeighting], ds) -> Optional[np.ndarray]:
    """Weights [n] of the frames of ``ds`` (None without a weighting: every frame 1)."""
    if weighting is None or ds.n_frames == 0:
        return None
    return _raw(weighting, ds) / weighting.norm


def weighting_of(cfg, train_ds) -> Optional[FrameWeighting]:
    """The run's weighting from its config (``loss.frame_weight_scale_eV``, ``data.weights``;
    None: every frame 1)."""
    scale, sources = cfg.loss.frame_weight_scale_eV, cfg.data.weights
    if scale is None and sources is None:
        return None
    return fit_frame_weighting(train_ds, scale, sources)


def summary(weighting: Optional[FrameWeighting], train_ds) -> Optional[dict]:
    """What a run records of its weighting: the scale and the spread of the training weights."""
    w = frame_weights(weighting, train_ds)
    if w is None:
        return None
    sources = None if weighting.source_weights is None else list(weighting.source_weights)
    return {"scale_eV": weighting.scale_eV, "source_weights": sources, "train_min": float(w.min()),
            "train_max": float(w.max()), "train_effective_fraction": float(w.sum() ** 2 / (len(w) * np.sum(w**2)))}
