"""The training data: load it (shipped sets, files, lists of them; failed labels left out),
split it by seed, and check every frame against the model before anything compiles.

Shared by the trainer, the loss builder (constraint probes), ``qdyn eval``/``explain``,
influence functions and the active-learning loop.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..models.base import EnergyModel
from ..validation import QdynInputError

_log = logging.getLogger("qdyn")

SOURCE_KEY = "data_source"
"""``extras`` key of the index (into ``data.path``) of the source each frame came from; set by
:func:`load_data` when ``data.weights`` asks for per-source weights."""


def load_data(cfg):
    """The dataset named by a DataConfig (``shipped:NAME`` or a file; a list of them is
    concatenated in order, so the split is the same whenever the list is).

    Frames whose labels did not converge or are not finite are dropped and reported (one
    line on the ``qdyn`` logger; their indices in ``metadata['dropped_frames']``), as
    ``qdyn data split`` does: a failed label never reaches training or metrics. With
    ``cfg.check_plausibility`` the data must pass :mod:`qdyn.data.plausibility`.
    """
    from ..data import Dataset, load_shipped, read
    from ..data.plausibility import check_dataset

    def one(path):
        if path.startswith("shipped:"):
            ds = load_shipped(path.split(":", 1)[1])  # failed frames already left out
            if cfg.check_plausibility:
                check_dataset(ds)
            return ds
        return read(path, energy_unit=cfg.energy_unit, length_unit=cfg.length_unit,
                    energy_key=cfg.energy_key, forces_key=cfg.forces_key, check_plausibility=cfg.check_plausibility)

    if isinstance(cfg.path, str):
        ds = one(cfg.path)
    else:
        if not cfg.path:
            raise QdynInputError("data.path is an empty list")
        parts = [one(p) for p in cfg.path]
        if cfg.weights is not None:  # each frame remembers its source, through the split (copies: shipped sets are cached)
            parts = [dataclasses.replace(part, extras={**part.extras, SOURCE_KEY: np.full(part.n_frames, k)})
                     for k, part in enumerate(parts)]
        ds = parts[0] if len(parts) == 1 else Dataset.concatenate(parts)
    kept, dropped = ds.drop_failed()
    if len(dropped):
        if kept.n_frames == 0:
            raise QdynInputError(f"{cfg.path}: every one of its {ds.n_frames} frames has failed or non-finite labels; "
                                 "nothing to train or evaluate on")
        shown = ", ".join(str(i) for i in dropped[:10]) + (" ..." if len(dropped) > 10 else "")
        _log.warning(f"notice: {cfg.path}: left out {len(dropped)} of {ds.n_frames} frames whose labels did not "
                     f"converge or are not finite (frames {shown})")
        kept.metadata["dropped_frames"] = [int(i) for i in dropped]
    return kept


def split_data(ds, cfg):
    """(train, val, test) by ``split_seed``; sizes from n_* or fractions."""

    ds.require("E", "F")
    n = ds.n_frames
    perm = np.random.default_rng(cfg.split_seed).permutation(n)
    if cfg.n_train is not None:
        n_tr = cfg.n_train
        n_va = cfg.n_val if cfg.n_val is not None else 0
        n_te = cfg.n_test if cfg.n_test is not None else n - n_tr - n_va
    else:
        n_tr = int(round(cfg.fractions[0] * n))
        n_va = int(round(cfg.fractions[1] * n))
        n_te = n - n_tr - n_va
    if n_tr + n_va + n_te > n or min(n_tr, n_va, n_te) < 0 or n_tr < 1:
        raise QdynInputError(f"{ds.source}: field 'data.n_train/n_val/n_test': split {n_tr}/{n_va}/{n_te} "
                             f"(train/val/test) does not fit its {n} usable frames")
    parts = np.split(perm, [n_tr, n_tr + n_va, n_tr + n_va + n_te])[:3]
    return tuple(ds.subset(np.sort(p)) for p in parts)


def check_frames(model: EnergyModel, ds) -> None:
    """``model.check`` on every frame (host side, before compiling); errors name file and frame."""

    for i in range(ds.n_frames):
        try:
            model.check(*ds.to_system(i))
        except QdynInputError as exc:
            raise QdynInputError(f"{ds.source}: frame {i}: {exc}") from None
