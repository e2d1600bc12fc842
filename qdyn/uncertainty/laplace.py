"""Last-layer Laplace approximation: a Gaussian posterior over a model's linear readout,
fitted after training (no retraining), with the linearised (GLM) predictive.

The readout of every family is the set of parameters its energy ends in (:func:`readout_mask`):
the energy scale and per-species shifts (every family), the integration layer that maps the
quantum and classical atomic features to an atomic energy (hybrid, multistate: ``int_c``,
``int_b``), the output layer of each element's network (BPNN: the last ``Dense`` of
``nets/*``), and a multistate model's state offsets. With θ those P numbers and
``J = ∂(E, F)/∂θ`` per frame, the generalised Gauss–Newton posterior precision is

    H = λ·I + Σ_frames [ J_Eᵀ J_E / s_E² + Σ_real components J_Fᵀ J_F / s_F² ],

with s_E, s_F the root-mean-square training residuals of the trained model and λ the prior
precision. The predictive variance of a frame is ``J Σ Jᵀ`` with ``Σ = H⁻¹`` (Immer et al.,
AISTATS 2021; Daxberger et al., "Laplace Redux", NeurIPS 2021). P is tens to a few hundred,
so H is formed and inverted exactly.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..models.base import EnergyModel, energy_and_forces_fn

#: Top-level parameter keys that belong to the readout wherever a family has them.
READOUT_KEYS = ("scale", "shift", "state_offset", "int_c", "int_b")
#: Top-level keys holding per-element networks whose output layer is part of the readout.
NETWORK_KEYS = ("nets",)


def _last_dense(tree: dict) -> set:
    dense = [k for k in tree if k.startswith("Dense_")]
    return {max(dense, key=lambda k: int(k.split("_")[1]))} if dense else set()


def readout_mask(params: dict) -> dict:
    """A pytree of bools like ``params``: True on the readout leaves (module docstring)."""

    def net_mask(tree):
        last = _last_dense(tree)
        return {k: (jax.tree_util.tree_map(lambda _: True, v) if k in last
                    else net_mask(v) if isinstance(v, dict) else False) for k, v in tree.items()}

    return {k: (jax.tree_util.tree_map(lambda _: True, v) if k in READOUT_KEYS
                else net_mask(v) if k in NETWORK_KEYS and isinstance(v, dict)
                else jax.tree_util.tree_map(lambda _: False, v)) for k, v in params.items()}


def readout_paths(params: dict) -> list[str]:
    """Names of the readout leaves, in flattening order (recorded with a run)."""
    flat = jax.tree_util.tree_flatten_with_path(readout_mask(params))[0]
    return [jax.tree_util.keystr(p) for p, on in flat if on]


def split_readout(params: dict):
    """(θ [P], merge) where ``merge(θ)`` is ``params`` with its readout leaves replaced."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    on = jax.tree_util.tree_leaves(readout_mask(params))
    theta, unravel = ravel_pytree([leaf for leaf, o in zip(leaves, on) if o])

    def merge(theta):
        it = iter(unravel(theta))
        return jax.tree_util.tree_unflatten(treedef, [next(it) if o else leaf for leaf, o in zip(leaves, on)])

    return theta, merge


class LaplacePosterior(NamedTuple):
    """The Gaussian posterior over the readout: covariance Σ [P, P] of θ around the trained
    values (the parameters themselves are the run's), and the leaf names θ is made of."""

    covariance: np.ndarray
    paths: tuple


_FRAME_PAIRS_PER_CHUNK = 20_000  # frames × atoms² of one Jacobian batch in fit_laplace


@functools.lru_cache(maxsize=16)
def _readout_jacobian_fn(apply):
    """jit of ``(params, R [B,A,3], system) -> (E [B], F [B,A,3], J_E [B,P], J_F [B,A,3,P])``."""
    ef = energy_and_forces_fn(apply)

    def one(params, R, system):
        theta, merge = split_readout(params)
        fn = lambda t: ef(merge(t), R, system)  # noqa: E731
        (E, F), (J_E, J_F) = fn(theta), jax.jacfwd(fn)(theta)
        return E, F, J_E, J_F

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def readout_jacobians(model: EnergyModel, params, batch):
    """Energies, forces and their Jacobians with respect to the readout for one batch."""
    return _readout_jacobian_fn(model.apply)(params, batch.R, batch.system)


def fit_laplace(model: EnergyModel, params, train_ds, *, prior_precision: float = 1.0,
                chunk: int = 64) -> LaplacePosterior:
    """The GGN Laplace posterior of the readout of a trained single model on its training
    frames (energies and forces both; module docstring)."""
    from ..train.batches import make_batch

    if model.member is not None:
        raise ValueError("a Laplace posterior is fitted to one model, not to an ensemble")
    train_ds.require("E", "F")
    theta, _ = split_readout(params)
    P = theta.size
    # jacfwd carries P tangents through every pair term of the batch: 64 frames of a 96-atom
    # periodic box asked for 50 GB. Cap frames × atoms² (H2O keeps 64 frames, a box gets 2).
    chunk = max(1, min(chunk, _FRAME_PAIRS_PER_CHUNK // train_ds.Z.shape[1] ** 2))
    GE, GF = np.zeros((P, P)), np.zeros((P, P))
    sq_E, sq_F, n_F = 0.0, 0.0, 0
    for start in range(0, train_ds.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, train_ds.n_frames))
        b = make_batch(train_ds, idx, chunk)
        E, F, J_E, J_F = (np.asarray(x)[: len(idx)] for x in readout_jacobians(model, params, b))
        mask = np.asarray(b.system.mask)[: len(idx)]
        J_F = J_F[mask]  # [m, 3, P] real atoms
        GE += J_E.T @ J_E
        GF += np.einsum("mcp,mcq->pq", J_F, J_F)
        sq_E += float(np.sum((E - train_ds.E[idx]) ** 2))
        dF = (F - train_ds.F[idx])[mask]
        sq_F += float(np.sum(dF**2))
        n_F += dF.size
    s2_E, s2_F = sq_E / train_ds.n_frames, sq_F / max(n_F, 1)
    H = prior_precision * np.eye(P) + GE / max(s2_E, 1e-300) + GF / max(s2_F, 1e-300)
    cov = np.linalg.inv(H)
    cov = 0.5 * (cov + cov.T)
    return LaplacePosterior(covariance=cov, paths=tuple(readout_paths(params)))


def laplace_std(J_E, J_F, covariance):
    """(σ_E [B], σ_F per atom [B, A]) of the linearised predictive: ``diag(J Σ Jᵀ)``, the
    force variance averaged over the three components of an atom."""
    cov = jnp.asarray(covariance)
    var_E = jnp.einsum("bp,pq,bq->b", J_E, cov, J_E)
    var_F = jnp.einsum("bacp,pq,bacq->ba", J_F, cov, J_F) / 3.0
    return jnp.sqrt(jnp.maximum(var_E, 0.0)), jnp.sqrt(jnp.maximum(var_F, 0.0))
