"""Deep ensembles: K parameter sets of one model, trained in one run, evaluated in one call.

An ensemble's parameters are the member's parameter dict with a leading member axis on every
leaf (``params["scale"]`` is ``[K]``, ``params["shift"]`` ``[K, n_species]``, ...). Two
things use that axis:

* :func:`ensemble_model` wraps a member :class:`~qdyn.models.base.EnergyModel` into one
  whose ``apply`` is the member mean, ``vmap``-ed over the K parameter sets, so MD, the ASE
  calculator and evaluation use an ensemble like any model; its ``member`` field keeps the
  member model for the spread (:mod:`qdyn.uncertainty.predict`).
* :class:`MemberAxis` is what training needs: the train step, the optimiser initialisation
  and the loss ``vmap``-ed over the member axis (one compiled step for all K members, not K
  runs). Every member sees the same minibatches; the members differ by their initial
  parameters only. Deep ensembles draw their diversity mostly from the random initialisation
  (Lakshminarayanan et al., NeurIPS 2017; Fort et al., 2019), and the same batches keep one
  epoch order and one resumable position for the whole run.

Member k starts from ``PRNGKey(seed)`` for k = 0 and ``fold_in(PRNGKey(seed), k)`` after
that, so member 0 of an ensemble is the model a single run with the same seed trains.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ..models.base import EnergyModel


def member_keys(key, size: int) -> list:
    """The K initialisation keys: ``key`` itself, then ``fold_in(key, k)``."""
    return [key] + [jax.random.fold_in(key, k) for k in range(1, size)]


def stack(trees: list):
    """Stack K pytrees of the same structure along a new leading member axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree) -> list:
    """The K member pytrees of a stacked one."""
    size = ensemble_size(tree)
    return [jax.tree_util.tree_map(lambda x, k=k: x[k], tree) for k in range(size)]


def ensemble_size(tree) -> int:
    return int(jax.tree_util.tree_leaves(tree)[0].shape[0])


def _mean_over_members(fn: Callable) -> Callable:
    mapped = jax.vmap(fn, in_axes=(0, None, None, None))

    def mean(params, R, system, neighbor=None):
        return jnp.mean(mapped(params, R, system, neighbor), axis=0)

    return mean


def ensemble_model(member: EnergyModel, size: int) -> EnergyModel:
    """An :class:`EnergyModel` of ``size`` members of ``member``: ``apply`` (and the atomic
    energies, charges, diabatic matrix and adiabatic energies) are member means over stacked
    parameters; ``init(key)`` stacks the members' initial parameters (:func:`member_keys`).

    ``config`` is the member's (``build_model`` rebuilds one member); a run directory records
    the ensemble size, and :func:`qdyn.train.load_run` rebuilds the ensemble from it.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> from qdyn.models import bpnn
        >>> from qdyn.structures import water
        >>> ens = ensemble_model(bpnn.build(species=(1, 8), hidden=(4,)), 3)
        >>> params = ens.init(jax.random.PRNGKey(0))
        >>> params["scale"].shape
        (3,)
        >>> R, system = water()
        >>> E = ens.apply(params, R, system)   # the mean of three members' energies
    """
    if size < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {size}")

    def init(key):
        return stack([member.init(k) for k in member_keys(key, size)])

    def optional(fn):
        return None if fn is None else _mean_over_members(fn)

    return member._replace(init=init, apply=_mean_over_members(member.apply), name=f"{member.name}×{size}",
                           atom_energies=optional(member.atom_energies), diabatic=optional(member.diabatic),
                           adiabatic=optional(member.adiabatic), member=member,
                           # the member mean of charges is the ensemble's; of a descriptor it is not
                           charges=optional(member.charges), atom_terms=None)


class MemberAxis(NamedTuple):
    """How training maps over ensemble members; ``size`` 0 means a single model (no member
    axis: every method returns its argument unchanged)."""

    size: int = 0

    def step(self, step: Callable) -> Callable:
        """``step(params, opt_state, ema, batch, w_E, w_F, w_net, lr)`` over stacked params,
        optimiser states and EMAs; the batch, loss weights and learning rate are shared. Returns
        per-member losses."""
        if not self.size:
            return step
        return jax.vmap(step, in_axes=(0, 0, 0, None, None, None, None, None))

    def opt_init(self, tx) -> Callable:
        """``tx.init`` of every member (optimiser states with the member axis)."""
        return jax.vmap(tx.init) if self.size else tx.init

    def loss(self, loss: Callable) -> Callable:
        """``loss(params, batch, *weights) -> (value, aux)`` averaged over members."""
        if not self.size:
            return loss
        mapped = jax.vmap(loss, in_axes=(0, None, None, None, None))

        def mean(params, batch, w_E, w_F, w_net):
            value, aux = mapped(params, batch, w_E, w_F, w_net)
            return jnp.mean(value), jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), aux)

        return mean
