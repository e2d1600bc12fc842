"""Energy + force losses on batched, padded data."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models.base import energy_and_forces_fn


def make_loss_fn(apply, *, sigma_E: float, sigma_F: float, per_atom: bool = True, charges=None,
                 dipole_weight: float = 0.0, sigma_D: float = 1.0):
    """``loss(params, batch, w_E, w_F, w_net) -> (loss, aux)``.

    Energy residuals (per atom when ``per_atom``) are divided by ``sigma_E`` and force
    residuals by ``sigma_F`` (data scales fixed before training), so the weights are
    dimensionless. ``w_net`` weighs the net force, identically zero for qdyn's translation-
    invariant models (kept for old configs). With ``dipole_weight`` and a model's
    ``charges(params, R, system)``, ``dipole_weight · mean(|Σ q_i R_i - μ_ref|²/3)/sigma_D²``
    is added (``batch.dipole`` [B, 3] e·Å). Padding frames (weight 0) and padding atoms
    (mask False) do not count.
    """
    ef = jax.vmap(energy_and_forces_fn(apply), in_axes=(None, 0, 0))
    q_fn = jax.vmap(charges, in_axes=(None, 0, 0)) if dipole_weight else None

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
        aux = {"loss_E": l_E, "loss_F": l_F, "loss_net": l_net}
        if q_fn is not None:
            q = q_fn(params, batch.R, batch.system)
            mu = jnp.sum(jnp.where(mask[..., None], q[..., None] * batch.R, 0.0), axis=1)  # [B, 3] e·Å
            aux["loss_dipole"] = jnp.sum(w * jnp.sum(((mu - batch.dipole) / sigma_D) ** 2, -1)) / (3 * jnp.sum(w))
            total = total + dipole_weight * aux["loss_dipole"]
        return total, aux

    return loss


def make_multistate_loss_fn(
    model,
    *,
    sigma_E: float,
    sigma_F: float,
    per_atom: bool = True,
    smoothness_weight: float = 0.0,
    coupling_far_weight: float = 0.0,
    diabat_order_weight: float = 0.0,
    gap_scale: float = 0.5,
):
    """``loss(params, batch, w_E, w_F, w_net) -> (loss, aux)`` for a multistate model on
    adiabatic data (``batch.E_states`` [B, S] eV, ``batch.F_states`` [B, S, A, 3] eV/Å).

    The data terms are those of :func:`make_loss_fn` summed over states: adiabatic energy
    residuals (per atom when ``per_atom``) over ``sigma_E``, force residuals ``F_i = -∇E_i``
    over ``sigma_F``, the net force of every state. Optional regularisers shape the
    diabatic matrix W, which adiabatic data alone leave free up to a rotation
    (docs/multistate.md); with ``f_kl = 1 - exp(-(ΔE_kl/gap_scale)²)`` from the reference
    gap of states k < l (0 at a crossing, 1 far from it):

    * ``smoothness_weight`` · mean |∇W_kl|² / sigma_F² — slowly varying couplings;
    * ``coupling_far_weight`` · mean f_kl (W_kl / gap_scale)² — diabats coincide with
      adiabats far from crossings;
    * ``diabat_order_weight`` · mean f_k,k+1 relu(W_kk - W_k+1,k+1)² / gap_scale² — the
      diabatic diagonal keeps the adiabatic order far from crossings.

    The regulariser weights are fixed when the loss is built; the data weights are
    call-time arguments (schedules).
    """
    from ..models.multistate import diabatic_and_adiabatic_fn

    fn = jax.vmap(diabatic_and_adiabatic_fn(model), in_axes=(None, 0, 0))
    n = model.n_states
    iu = jnp.triu_indices(n, 1)

    def loss(params, batch, w_E, w_F, w_net):
        W, dW, E, F = fn(params, batch.R, batch.system)  # [B,n,n], [B,n,n,A,3], [B,n], [B,n,A,3]
        mask = batch.system.mask
        w = batch.weight
        n_at = jnp.sum(mask, axis=1)
        dE = E - batch.E_states
        if per_atom:
            dE = dE / n_at[:, None]
        l_E = jnp.sum(w[:, None] * (dE / sigma_E) ** 2) / (n * jnp.sum(w))
        m4 = (w[:, None] * mask)[:, None, :, None]
        l_F = jnp.sum(m4 * ((F - batch.F_states) / sigma_F) ** 2) / (3 * n * jnp.sum(w * n_at))
        net = jnp.sum(jnp.where(mask[:, None, :, None], F, 0.0), axis=2)  # [B, n, 3]
        l_net = jnp.sum(w[:, None] * jnp.sum((net / sigma_F) ** 2, axis=-1)) / (n * jnp.sum(w))
        total = w_E * l_E + w_F * l_F + w_net * l_net
        aux = {"loss_E": l_E, "loss_F": l_F, "loss_net": l_net}
        wsum = jnp.sum(w)
        if smoothness_weight:
            g2 = jnp.sum(jnp.where(mask[:, None, :, None], dW[:, iu[0], iu[1]], 0.0) ** 2, axis=(2, 3))  # [B, P]
            l_s = jnp.sum(w[:, None] * g2) / (wsum * sigma_F**2)
            total = total + smoothness_weight * l_s
            aux["loss_smooth"] = l_s
        if coupling_far_weight or diabat_order_weight:
            gap = batch.E_states[:, :, None] - batch.E_states[:, None, :]  # [B, n, n]
            far = 1.0 - jnp.exp(-((gap / gap_scale) ** 2))
            if coupling_far_weight:
                l_c = jnp.sum(w[:, None] * far[:, iu[0], iu[1]] * (W[:, iu[0], iu[1]] / gap_scale) ** 2) / wsum
                total = total + coupling_far_weight * l_c
                aux["loss_coupling_far"] = l_c
            if diabat_order_weight:
                d = jnp.diagonal(W, axis1=1, axis2=2)  # [B, n]
                k = jnp.arange(n - 1)
                viol = jax.nn.relu(d[:, :-1] - d[:, 1:]) / gap_scale
                l_o = jnp.sum(w[:, None] * far[:, k, k + 1] * viol**2) / wsum
                total = total + diabat_order_weight * l_o
                aux["loss_diabat_order"] = l_o
        return total, aux

    return loss
