"""optax chains from the config: optimiser, schedule, clipping, parameter groups, plateau."""

from __future__ import annotations

import optax

from .config import OptimConfig


def make_schedule(cfg: OptimConfig, total_steps: int):
    lr = cfg.learning_rate
    steps = max(total_steps, 1)
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=steps, alpha=cfg.final_lr_fraction)
    return optax.exponential_decay(lr, transition_steps=steps, decay_rate=cfg.final_lr_fraction)


def make_optimizer(cfg: OptimConfig, labels, *, total_steps: int, trainable: set[str]):
    """A ``GradientTransformationExtraArgs``; call ``update(g, s, p, value=loss)``.

    Groups not in ``trainable`` (or listed in ``cfg.frozen``) get zero updates; "fixed"
    parameters (descriptor statistics) never move.
    """
    sched = make_schedule(cfg, total_steps)
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
