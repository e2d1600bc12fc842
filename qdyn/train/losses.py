"""Energy + force losses on batched, padded data."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models.base import energy_and_forces_fn


def make_loss_fn(apply, *, sigma_E: float, sigma_F: float, per_atom: bool = True):
    """``loss(params, batch, w_E, w_F, w_net) -> (loss, aux)``.

    Energy residuals (per atom when ``per_atom``) are divided by ``sigma_E`` and force
    residuals by ``sigma_F`` (data scales fixed before training), so the weights are
    dimensionless. ``w_net`` penalises the net force (a physical constraint for isolated
    systems). Padding frames (weight 0) and padding atoms (mask False) do not count.
    """
    ef = jax.vmap(energy_and_forces_fn(apply), in_axes=(None, 0, 0))

    def loss(params, batch, w_E, w_F, w_net):
        E, F = ef(params, batch.R, batch.system)
        mask = batch.system.mask
        w = batch.weight
        n_at = jnp.sum(mask, axis=1)
        dE = E - batch.E
        if per_atom:
            dE = dE / n_at
        l_E = jnp.sum(w * (dE / sigma_E) ** 2) / jnp.sum(w)
        m3 = (w[:, None] * mask)[..., None]
        l_F = jnp.sum(m3 * ((F - batch.F) / sigma_F) ** 2) / (3 * jnp.sum(w * n_at))
        net = jnp.sum(jnp.where(mask[..., None], F, 0.0), axis=1)
        l_net = jnp.sum(w * jnp.sum((net / sigma_F) ** 2, axis=-1)) / jnp.sum(w)
        total = w_E * l_E + w_F * l_F + w_net * l_net
        return total, {"loss_E": l_E, "loss_F": l_F, "loss_net": l_net}

    return loss
