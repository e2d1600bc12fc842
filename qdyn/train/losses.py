"""Energy + force losses on batched, padded data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..models.base import EnergyModel, energy_and_forces_fn
from .config import ConfigError
from .data import check_frames, load_data
from ..parallel import split_batch
from .normalize import force_rms, robust_rms, robust_std, species_reference_energies

if TYPE_CHECKING:
    from .config import TrainConfig


def residual_penalty(kind: str = "squared", delta: float = 1.0) -> Callable:
    """``x -> penalty`` of a scaled residual, elementwise: ``x²`` (``squared``), or the Huber
    function scaled to equal it up to ``delta`` (``huber``: ``2δ|x| − δ²`` beyond, continuous
    value and slope), under which a label far off pulls on the fit linearly, not quadratically."""
    if kind == "squared":
        return jnp.square
    if kind == "huber":
        return lambda x: 2.0 * optax.losses.huber_loss(x, delta=delta)
    raise ValueError(f"residual {kind!r}: expected 'squared' or 'huber'")


def make_loss_fn(apply, *, sigma_E: float, sigma_F: float, per_atom: bool = True, charges=None,
                 dipole_weight: float = 0.0, sigma_D: float = 1.0, mesh=None, residual: str = "squared",
                 huber_delta: float = 1.0):
    """``loss(params, batch, w_E, w_F, w_net) -> (loss, aux)``.

    Energy residuals (per atom when ``per_atom``) are divided by ``sigma_E`` and force
    residuals by ``sigma_F`` (data scales fixed before training), so the weights are
    dimensionless. ``w_net`` weighs the net force, identically zero for qdyn's translation-
    invariant models (kept for old configs). With ``dipole_weight`` and a model's
    ``charges(params, R, system)``, ``dipole_weight · mean(|Σ q_i R_i - μ_ref|²/3)/sigma_D²``
    is added (``batch.dipole`` [B, 3] e·Å). Padding frames (weight 0) and padding atoms
    (mask False) do not count. With a device ``mesh`` (data-parallel training) each device
    evaluates the model on its shard of the batch (:func:`qdyn.parallel.split_batch`).
    ``residual``/``huber_delta``: the penalty of the scaled energy and force residuals
    (:func:`residual_penalty`; the net-force and dipole terms stay squared).
    """
    penalty = residual_penalty(residual, huber_delta)
    ef = split_batch(jax.vmap(energy_and_forces_fn(apply), in_axes=(None, 0, 0)), mesh, 2)
    q_fn = jax.vmap(charges, in_axes=(None, 0, 0)) if dipole_weight else None

    def loss(params, batch, w_E, w_F, w_net):
        E, F = ef(params, batch.R, batch.system)
        mask = batch.system.mask
        w = batch.weight
        n_at = jnp.sum(mask, axis=1)
        dE = E - batch.E
        if per_atom:
            dE = dE / n_at
        l_E = jnp.sum(w * penalty(dE / sigma_E)) / jnp.sum(w)
        m3 = (w[:, None] * mask)[..., None]
        l_F = jnp.sum(m3 * penalty((F - batch.F) / sigma_F)) / (3 * jnp.sum(w * n_at))
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
    nac_weight: float = 0.0,
    sigma_H: float = 1.0,
    residual: str = "squared",
    huber_delta: float = 1.0,
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

    * ``nac_weight`` · :func:`nac_loss` / sigma_H² — the model's nonadiabatic couplings
      against the reference's (``batch.nacs_states``), as ``h_ij = (E_j − E_i) d_ij``, up
      to the sign of each frame's pair; this one does pin the diabatic rotation.

    The regulariser weights are fixed when the loss is built; the data weights are
    call-time arguments (schedules). ``residual``/``huber_delta``: the penalty of the scaled
    energy and force residuals, as in :func:`make_loss_fn`.
    """
    from ..models.multistate import diabatic_and_adiabatic_fn

    fn = jax.vmap(diabatic_and_adiabatic_fn(model), in_axes=(None, 0, 0))
    penalty = residual_penalty(residual, huber_delta)
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
        l_E = jnp.sum(w[:, None] * penalty(dE / sigma_E)) / (n * jnp.sum(w))
        m4 = (w[:, None] * mask)[:, None, :, None]
        l_F = jnp.sum(m4 * penalty((F - batch.F_states) / sigma_F)) / (3 * n * jnp.sum(w * n_at))
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
        if nac_weight:
            l_h = nac_loss(W, dW, batch.E_states, batch.nacs_states, mask, w) / sigma_H**2
            total = total + nac_weight * l_h
            aux["loss_nac"] = l_h
        return total, aux

    return loss


def scaled_couplings(W, dW):
    """``h_ij = u_iᵀ (∇W) u_j`` [n, n, A, 3] eV/Å of one frame's diabatic matrix W [n, n] and its
    Jacobian dW [n, n, A, 3]: ``(E_j − E_i) d_ij`` with d_ij = ⟨i|∇j⟩ (Hellmann–Feynman for
    off-diagonal elements, :mod:`qdyn.namd.electronic`), and ``∇E_i`` on the diagonal.

    Differentiable in the parameters behind W: for two states the eigenvectors are a rotation
    by ½ atan2(2 W_01, W_00 − W_11) (:func:`qdyn.namd.electronic.eigh_symmetric`), whose
    derivative grows as 1/gap but stays finite off an exact crossing; ``eigh``'s eigenvector
    derivative for n > 2 has the same 1/gap terms.
    """
    from ..namd.electronic import eigh_symmetric

    _, U = eigh_symmetric(0.5 * (W + W.T))
    return jnp.einsum("ai,ab...,bj->ij...", U, dW, U)


def nac_loss(W, dW, E_ref, nacs_ref, mask, weight):
    """Mean squared error of the model's ``h_ij`` against the reference ``(E_j − E_i) d_ij`` [eV/Å],
    i < j, up to the sign of each frame's pair (eV²/Å²; divide by a scale squared).

    Why h and not d: at a conical intersection d_ij = h_ij / (E_j − E_i) diverges (the
    reference |d01| of CaH2 reaches 19 1/Å 0.07 eV from the seam), so an error on d would be
    ruled by the frames nearest the seam and by the model's gap there, which the energy term
    already fits; h is the derivative coupling of the diabatic matrix, finite and smooth
    through the seam, and dynamics divides it by the model's own gap. Why the min over ±:
    each electronic-structure state comes with an arbitrary sign per geometry (the data's
    signs are made continuous only along a tree, and around an intersection no continuous
    choice exists), and the model's eigenvector signs are a gauge as well, so only ±h is
    defined (the phase-free loss of Westermayr et al., Chem. Sci. 10, 8100 (2019)). For
    more than two states each pair takes its own sign, a relaxation of the one-sign-per-state
    gauge.

    Args:
        W: [B, n, n] eV.  dW: [B, n, n, A, 3] eV/Å.  E_ref: [B, n] eV, reference energies.
        nacs_ref: [B, n, n, A, 3] 1/Å, reference d_ij = ⟨i|∇j⟩; frames whose couplings are
            not finite do not count.
        mask: bool [B, A], real atoms.  weight: [B], 0 for padding frames.
    """
    n = W.shape[-1]
    iu = np.triu_indices(n, 1)
    h_model = jax.vmap(scaled_couplings)(W, dW)[:, iu[0], iu[1]]  # [B, P, A, 3]
    gap_ref = E_ref[:, iu[1]] - E_ref[:, iu[0]]  # [B, P] E_j − E_i
    d_ref = nacs_ref[:, iu[0], iu[1]]
    finite = jnp.all(jnp.isfinite(d_ref), axis=(1, 2, 3))  # [B]
    h_ref = gap_ref[:, :, None, None] * jnp.where(finite[:, None, None, None], d_ref, 0.0)
    m = mask[:, None, :, None]
    err_plus = jnp.sum(jnp.where(m, h_model - h_ref, 0.0) ** 2, axis=(2, 3))  # [B, P]
    err_minus = jnp.sum(jnp.where(m, h_model + h_ref, 0.0) ** 2, axis=(2, 3))
    w = weight * finite
    n_at = jnp.sum(mask, axis=1)
    return jnp.sum(w[:, None] * jnp.minimum(err_plus, err_minus)) / jnp.maximum(
        3 * len(iu[0]) * jnp.sum(w * n_at), 1.0)


def build_loss(cfg: "TrainConfig", model: EnergyModel, train_ds, species, mesh=None) -> Callable:
    """The training loss of a config: ``loss(params, batch, w_E, w_F, w_net) -> (loss, aux)``
    (:func:`make_loss_fn`, or :func:`make_multistate_loss_fn` for a multistate model), with
    energy and force residuals scaled by the spreads of ``train_ds`` (species reference
    energies removed; ``loss.scales: robust``: estimated from medians). The trainer and
    :mod:`qdyn.influence` build it here; the trainer passes its device ``mesh``."""
    mask = train_ds.Z > 0
    n_at = mask.sum(1)
    ref = species_reference_energies(train_ds.Z, train_ds.E, species)
    counts = np.stack([(train_ds.Z == z).sum(1) for z in species], 1)
    lc = cfg.loss
    robust = lc.scales == "robust"
    if not model.is_multistate:
        E_res = train_ds.E - counts @ ref
        x_E = E_res / n_at if lc.per_atom else E_res
        sigma_E = float(robust_std(x_E) if robust else np.std(x_E)) or 1.0
        sigma_F = (robust_rms(train_ds.F[mask]) if robust else force_rms(train_ds.F, mask)) or 1.0
        loss = make_loss_fn(model.apply, sigma_E=sigma_E, sigma_F=sigma_F, per_atom=lc.per_atom,
                            mesh=mesh, residual=lc.residual, huber_delta=lc.huber_delta,
                            **_dipole_terms(lc.dipole_weight, model, train_ds))
        return _constrained(loss, lc.constraints, model, train_ds, sigma_E, sigma_F) if lc.constraints.active else loss
    if lc.constraints.active:
        raise ConfigError("loss.constraints are built for single-state models")
    # per-state spreads: the excitation energy itself is not a residual scale
    E_res = train_ds.E_states - (counts @ ref)[:, None]
    x_E = E_res / n_at[:, None] if lc.per_atom else E_res
    var = robust_std(x_E, axis=0) ** 2 if robust else np.var(x_E, axis=0)
    sigma_E = float(np.sqrt(np.mean(var))) or 1.0
    F_all = train_ds.F_states if train_ds.F_states is not None else train_ds.F[:, None]
    F_real = F_all[np.broadcast_to(mask[:, None], F_all.shape[:3])]
    sigma_F = (robust_rms(F_real) if robust else float(np.sqrt(np.mean(F_real**2)))) or 1.0
    return make_multistate_loss_fn(model, sigma_E=sigma_E, sigma_F=sigma_F, per_atom=lc.per_atom,
                                   smoothness_weight=lc.smoothness_weight, coupling_far_weight=lc.coupling_far_weight,
                                   diabat_order_weight=lc.diabat_order_weight, gap_scale=lc.coupling_gap_scale,
                                   residual=lc.residual, huber_delta=lc.huber_delta,
                                   **_nac_terms(lc.nac_weight, model, train_ds))


def _nac_terms(weight: float, model: EnergyModel, train_ds) -> dict:
    """The NAC-loss settings of :func:`make_multistate_loss_fn`: the weight and sigma_H, the RMS
    component of the reference h_ij = (E_j − E_i) d_ij (i < j) over the training frames [eV/Å]."""
    if not weight:
        return {}
    nacs = train_ds.extras.get("nacs_states")
    if nacs is None:
        raise ConfigError(f"loss.nac_weight: {train_ds.source} has no couplings (extras['nacs_states'] "
                          "[n, S, S, A, 3] 1/Å)")
    n = model.n_states
    if nacs.shape[1:3] != (n, n):
        raise ConfigError(f"loss.nac_weight: extras['nacs_states'] of {train_ds.source} couples {nacs.shape[1]} "
                          f"states, the model has {n}")
    iu = np.triu_indices(n, 1)
    h = (train_ds.E_states[:, iu[1]] - train_ds.E_states[:, iu[0]])[:, :, None, None] * nacs[:, iu[0], iu[1]]
    real = np.broadcast_to((train_ds.Z > 0)[:, None, :, None], h.shape) & np.isfinite(h)
    sigma_H = float(np.sqrt(np.mean(h[real] ** 2))) if real.any() else 0.0
    return {"nac_weight": weight, "sigma_H": sigma_H or 1.0}


def _dipole_terms(weight: float, model: EnergyModel, train_ds) -> dict:
    """The dipole-loss settings of :func:`make_loss_fn` (none when the weight is 0)."""
    if not weight:
        return {}
    if model.charges is None:
        raise ConfigError(f"loss.dipole_weight needs a model with charges: set model.electrostatics ({model.name} "
                          "has none)")
    if "dipole" not in train_ds.extras:
        raise ConfigError(f"loss.dipole_weight: {train_ds.source} has no dipoles (extras['dipole'] [n, 3] e·Å)")
    sigma_D = float(np.sqrt(np.mean(np.asarray(train_ds.extras["dipole"], float) ** 2))) or 1.0
    return {"charges": model.charges, "dipole_weight": weight, "sigma_D": sigma_D}


def _constrained(loss: Callable, cc, model: EnergyModel, train_ds, sigma_E: float, sigma_F: float) -> Callable:
    """``loss`` plus the constraint terms of ``cc`` (:mod:`qdyn.train.constraints`), probes
    built once from the training frames."""
    from . import constraints
    from .config import DataConfig

    dis = wall = order = None
    if cc.dissociation is not None:
        sets = [load_data(DataConfig(path=p)) for p in cc.dissociation.fragment_data]
        dis = constraints.dissociation_probes(cc.dissociation, train_ds.Z, sets, seed=cc.seed)
    if cc.repulsive_wall is not None:
        wall = constraints.wall_probes(cc.repulsive_wall, train_ds, seed=cc.seed)
    if cc.energy_order is not None:
        order = constraints.order_probes(cc.energy_order, load_data(DataConfig(path=cc.energy_order.data)),
                                         train_ds.Z)
    for probes in (dis, wall, order):
        if probes is not None:
            check_frames(model, _probe_dataset(probes))
    terms = constraints.make_constraint_loss(model.apply, cc, dissociation=dis, wall=wall, sigma_E=sigma_E,
                                             sigma_F=sigma_F, order=order)
    return constraints.with_constraints(loss, terms)


def _probe_dataset(probes):
    from ..data import Dataset

    return Dataset(R=probes.R, Z=np.asarray(probes.system.species), source="constraint probes")


def loss_weights(cfg: "TrainConfig", epoch: int):
    """(w_E, w_F, w_net) of an epoch: linear schedules from the initial to the final weights."""
    frac = epoch / max(cfg.epochs - 1, 1)
    lc = cfg.loss

    def ramp(w0, w1):
        return w0 + frac * ((w1 if w1 is not None else w0) - w0)

    return (jnp.asarray(ramp(lc.energy_weight, lc.energy_weight_final)),
            jnp.asarray(ramp(lc.force_weight, lc.force_weight_final)), jnp.asarray(lc.net_force_weight))
