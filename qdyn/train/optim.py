"""optax chains from the config: optimiser, schedule, clipping, parameter groups, plateau."""

from __future__ import annotations

import numpy as np
import optax

from .config import OptimConfig

UNIT_RATE = optax.constant_schedule(1.0)
"""The rate the optimiser itself runs at. The trainer's step multiplies the update by the
learning rate it is passed (:func:`learning_rates`), so the compiled step does not depend on the
schedule, the run's length or the peak rate: a learning-rate or epoch sweep, or a run resumed
with more epochs, in one process compiles no new step (``qdyn.compiled``). A schedule rather
than the number 1 keeps adam's step-count slot, so checkpoints keep their optimiser-state layout."""


def make_schedule(cfg: OptimConfig, total_steps: int):
    lr = cfg.learning_rate
    steps = max(total_steps, 1)
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=steps, alpha=cfg.final_lr_fraction)
    return optax.exponential_decay(lr, transition_steps=steps, decay_rate=cfg.final_lr_fraction)


def learning_rates(cfg: OptimConfig, total_steps: int) -> np.ndarray:
    """The learning rate of each of the ``total_steps`` steps of a stage [total_steps]."""
    steps = max(total_steps, 1)
    rates = make_schedule(cfg, steps)(np.arange(steps))
    return np.broadcast_to(np.asarray(rates, dtype=float), (steps,))


def make_optimizer(cfg: OptimConfig, labels, *, trainable: set[str]):
    """A ``GradientTransformationExtraArgs`` at unit rate (:data:`UNIT_RATE`); call
    ``update(g, s, p, value=loss)`` and scale the update by the step's learning rate
    (:func:`learning_rates`). Every later transform (group rates, plateau factor) is linear, so
    scaling last equals running the schedule inside.

    Groups not in ``trainable`` (or listed in ``cfg.frozen``) get zero updates; "fixed"
    parameters (descriptor statistics) never move.
    """
    sched = UNIT_RATE
    transforms = {}
    for group in ("quantum", "classical"):
        if group in trainable and group not in cfg.frozen:
            parts = []
            if cfg.clip_norm is not None:
                parts.append(optax.clip_by_global_norm(cfg.clip_norm))
            if cfg.optimizer == "adamw":
                parts.append(optax.adamw(sched, weight_decay=cfg.weight_decay))
            else:
                parts.append(optax.adam(sched))
            if group in cfg.group_lr:
                parts.append(optax.scale(cfg.group_lr[group]))
            transforms[group] = optax.chain(*parts)
        else:
            transforms[group] = optax.set_to_zero()
    transforms["fixed"] = optax.set_to_zero()
    tx = optax.multi_transform(transforms, labels)
    if cfg.reduce_on_plateau:
        tx = optax.chain(tx, optax.contrib.reduce_on_plateau(patience=cfg.plateau_patience, factor=cfg.plateau_factor))
    return optax.with_extra_args_support(tx)
