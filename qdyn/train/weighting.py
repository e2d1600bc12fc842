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
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class FrameWeighting(NamedTuple):
    """What the weights of any frame are computed from (fixed on the training frames)."""

    scale_eV: float
    minima: dict  # composition key -> lowest training energy [eV]
    norm: float  # mean raw weight of the training frames


def _ground_energies(ds) -> np.ndarray:
    """Energies [n] eV a frame is weighed by: E, or the lowest state of multistate labels."""
    if ds.E is not None:
        return np.asarray(ds.E, dtype=float)
    ds.require("E_states")
    return np.asarray(ds.E_states, dtype=float)[:, 0]


def _compositions(Z: np.ndarray) -> list[bytes]:
    """One hashable key per frame: its count of atoms of every element (padding excluded)."""
    return [np.bincount(z[z > 0], minlength=119).tobytes() for z in np.asarray(Z)]


def _raw(E: np.ndarray, keys: list[bytes], minima: dict, scale_eV: float) -> np.ndarray:
    own = {}
    for k, e in zip(keys, E):  # compositions the training frames lack: their own lowest frame
        if k not in minima:
            own[k] = min(own.get(k, np.inf), e)
    e_min = np.array([minima.get(k, own.get(k)) for k in keys])
    return scale_eV / (scale_eV + np.maximum(E - e_min, 0.0))


def fit_frame_weighting(train_ds, scale_eV: float) -> FrameWeighting:
    """The weighting of a training set: its lowest energy per composition and mean raw weight."""
    E, keys = _ground_energies(train_ds), _compositions(train_ds.Z)
    minima: dict = {}
    for k, e in zip(keys, E):
        minima[k] = min(minima.get(k, np.inf), e)
    raw = _raw(E, keys, minima, scale_eV)
    return FrameWeighting(float(scale_eV), minima, float(np.mean(raw)))


def frame_weights(weighting: Optional[FrameWeighting], ds) -> Optional[np.ndarray]:
    """Weights [n] of the frames of ``ds`` (None without a weighting: every frame 1)."""
    if weighting is None or ds.n_frames == 0:
        return None
    raw = _raw(_ground_energies(ds), _compositions(ds.Z), weighting.minima, weighting.scale_eV)
    return raw / weighting.norm


def weighting_of(loss_cfg, train_ds) -> Optional[FrameWeighting]:
    """The run's weighting from its ``loss`` settings (None: uniform)."""
    scale = loss_cfg.frame_weight_scale_eV
    return None if scale is None else fit_frame_weighting(train_ds, scale)


def summary(weighting: Optional[FrameWeighting], train_ds) -> Optional[dict]:
    """What a run records of its weighting: the scale and the spread of the training weights."""
    w = frame_weights(weighting, train_ds)
    if w is None:
        return None
    return {"scale_eV": weighting.scale_eV, "train_min": float(w.min()), "train_max": float(w.max()),
            "train_effective_fraction": float(w.sum() ** 2 / (len(w) * np.sum(w**2)))}
