"""Datasets as fixed-shape device batches (padding frames carry weight 0)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from ..system import System


class Batch(NamedTuple):
    R: jnp.ndarray  # [B, A, 3] Å
    system: System  # batched: species [B, A], mask [B, A]
    E: jnp.ndarray  # [B] eV
    F: jnp.ndarray  # [B, A, 3] eV/Å
    weight: jnp.ndarray  # [B] 1 for real frames, 0 for padding frames
    E_states: Optional[jnp.ndarray] = None  # [B, S] eV (multistate data only)
    F_states: Optional[jnp.ndarray] = None  # [B, S, A, 3] eV/Å (multistate data only)
    dipole: Optional[jnp.ndarray] = None  # [B, 3] e·Å (data with extras["dipole"] only)
    nacs_states: Optional[jnp.ndarray] = None  # [B, S, S, A, 3] 1/Å d_ij = <i|∇j> (multistate data with NACs)


def make_batch(ds, idx: np.ndarray, size: int, *, states: bool = False,
               frame_weights: Optional[np.ndarray] = None) -> Batch:
    """Frames ``idx`` of dataset ``ds``, padded to ``size`` frames by repeating the first;
    with ``states`` the multistate labels (E_states, and F_states or zeros, and
    ``extras["nacs_states"]`` where the data have them) come along. ``frame_weights`` [n of
    ``ds``]: the weight of every frame of ``ds`` (default 1; :mod:`qdyn.train.weighting`)."""
    idx = np.asarray(idx)
    n = len(idx)
    if n == 0 or n > size:
        raise ValueError(f"batch of {n} frames for size {size}")
    full = np.concatenate([idx, np.full(size - n, idx[0])])
    w = np.zeros(size)
    w[:n] = 1.0 if frame_weights is None else frame_weights[idx]
    Z = ds.Z[full]
    cells = ds.periodic_cells()
    F = ds.F[full] if ds.F is not None else np.zeros_like(ds.R[full])
    if states:
        ds.require("E_states")
        F_states = ds.F_states[full] if ds.F_states is not None else np.zeros(ds.E_states[full].shape + ds.R.shape[1:])
    return Batch(
        R=jnp.asarray(ds.R[full]),
        system=System(species=jnp.asarray(Z), mask=jnp.asarray(Z > 0),
                      box=None if cells is None else jnp.asarray(cells[full])),
        E=jnp.asarray(ds.E[full] if ds.E is not None else np.zeros(len(full))),  # unlabelled: predictions only
        F=jnp.asarray(F),
        weight=jnp.asarray(w),
        E_states=jnp.asarray(ds.E_states[full]) if states else None,
        F_states=jnp.asarray(F_states) if states else None,
        dipole=jnp.asarray(ds.extras["dipole"][full], dtype=jnp.result_type(float)) if "dipole" in ds.extras else None,
        nacs_states=(jnp.asarray(ds.extras["nacs_states"][full], dtype=jnp.result_type(float))
                     if states and "nacs_states" in ds.extras else None),
    )


def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The shuffled frame order of an epoch: a pure function of (seed, epoch), so a resumed
    run sees exactly the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches_of(n: int, size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    order = epoch_order(n, seed=seed, epoch=epoch)
    return [order[i : i + size] for i in range(0, n, size)]
