"""The training loop: one call (:func:`train`) or one command (``qdyn train``).

Where jit sits: the train step (loss, gradients, optax update) and the evaluation of a
chunk of frames are each compiled once; the host loop does batching, validation, early
stopping, checkpoints, progress and Ctrl-C. The minibatch order is a pure function of
(seed, epoch), and checkpoints record the position inside an epoch, so a resumed run takes
exactly the steps an uninterrupted one would and ends with identical parameters.
"""

from __future__ import annotations

import functools
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from ..models.base import FIXED, EnergyModel, count_params, energy_and_forces_fn
from ..models.config import build_model
from ..quantum.execution import require_for_model, with_execution
from ..validation import QdynInputError
from ..models.core_repulsion import core_radii_from_data
from ..models.multistate import diabatic_and_adiabatic_fn
from ..system import System
from ..uncertainty.ensemble import MemberAxis, ensemble_model, member_keys, stack
from ..uncertainty.run import fit_for_run, rebuild_model
from .. import checkpoint as ckpt
from ..compiled import shared_jit
from .. import parallel
from .. import rundir
from ..data.io import atomic_write_text
from .batches import Batch, batches_of, make_batch
from .data import check_frames, load_data, split_data
from .config import RESUMABLE_FIELDS, ConfigError, TrainConfig, config_differences
from . import trackers
from .logs import HistoryLog, refresh_history
from .losses import build_loss, loss_weights
from .metrics import error_metrics, multistate_metrics, parity_plot
from .normalize import force_rms, species_reference_energies
from .optim import learning_rates, make_optimizer
from .weighting import FrameWeighting, frame_weights, summary as weighting_summary, weighting_of

EVAL_CHUNK = 64
EVAL_ATOMS = 2048  # atoms per evaluation chunk beyond which chunks shrink (a 96-atom periodic box
# padded to 64 frames held 5 GB in one E+F call of the dense descriptor; the water-box run died)


# ----------------------------------------------------------------------------- model
def _model_config(cfg: TrainConfig, species, train_ds=None) -> dict:
    mc = cfg.model.model_dump(mode="json")
    if "species" in type(cfg.model).model_fields and not mc["species"]:
        mc["species"] = [int(z) for z in species]
    if mc.get("core_radii") == "auto":
        # fixed from the training frames once, then recorded as numbers: a resumed or
        # reloaded run rebuilds exactly this wall whatever data it is given
        mc["core_radii"] = core_radii_from_data(train_ds.R, train_ds.Z, cell=train_ds.cell, pbc=train_ds.pbc,
                                                species=species)
    return mc


def eval_chunk(ds, chunk: int = EVAL_CHUNK) -> int:
    """Frames per evaluation call: ``chunk`` for small systems (one compiled shape for every
    split); for large frames (> EVAL_ATOMS atoms in a chunk) a power of two that keeps the
    chunk near EVAL_ATOMS atoms and pads no further than the dataset's own size."""
    n_atoms = ds.Z.shape[1]
    if chunk * n_atoms <= EVAL_ATOMS:
        return chunk
    fit = 1 << max(int(np.log2(max(EVAL_ATOMS // n_atoms, 1))), 0)
    return min(fit, 1 << int(np.ceil(np.log2(max(ds.n_frames, 1)))), chunk)


def predict(model: EnergyModel, params, ds, *, chunk: int = EVAL_CHUNK):
    """Energies [n] eV and forces [n, A, 3] eV/Å for every frame (jitted, chunked; see
    :func:`eval_chunk`)."""
    fn = _predict_fn(model.apply)
    chunk = eval_chunk(ds, chunk)
    Es, Fs = [], []
    for start in range(0, ds.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, ds.n_frames))
        b = make_batch(ds, idx, chunk)
        E, F = fn(params, b.R, b.system)
        Es.append(np.asarray(E)[: len(idx)])
        Fs.append(np.asarray(F)[: len(idx)])
    return np.concatenate(Es), np.concatenate(Fs)


# The jitted evaluators, one per model function. Bounded: a learn run or a long notebook builds
# many models, and each wrapper holds its model's compiled programs for as long as it is cached.
_CACHED_MODELS = 32


@functools.lru_cache(maxsize=_CACHED_MODELS)
def _predict_fn(apply):
    return shared_jit(jax.vmap(energy_and_forces_fn(apply), in_axes=(None, 0, 0)))


@functools.lru_cache(maxsize=_CACHED_MODELS)
def _features_fn(features):
    """jit of the descriptor over frames, compiled once per model: op by op it dispatched every
    primitive separately, for every ensemble member of every training run."""
    return jax.jit(jax.vmap(features))


_STATES_FNS: OrderedDict = OrderedDict()


def _states_fn(model):
    """Keyed on ``model.diabatic`` (an EnergyModel holds a config dict and does not hash)."""
    key = model.diabatic
    if key not in _STATES_FNS:
        _STATES_FNS[key] = jax.jit(jax.vmap(diabatic_and_adiabatic_fn(model), in_axes=(None, 0, 0)))
        if len(_STATES_FNS) > _CACHED_MODELS:
            _STATES_FNS.popitem(last=False)
    _STATES_FNS.move_to_end(key)
    return _STATES_FNS[key]


def predict_states(model, params, ds, *, chunk: int = EVAL_CHUNK):
    """Multistate predictions for every frame: adiabatic energies [n, S] eV, forces
    [n, S, A, 3] eV/Å and the diabatic matrix [n, S, S] eV (jitted, chunked)."""
    fn = _states_fn(model)
    Es, Fs, Ws = [], [], []
    for start in range(0, ds.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, ds.n_frames))
        b = make_batch(ds, idx, chunk)
        W, _, E, F = fn(params, b.R, b.system)
        Es.append(np.asarray(E)[: len(idx)])
        Fs.append(np.asarray(F)[: len(idx)])
        Ws.append(np.asarray(W)[: len(idx)])
    return np.concatenate(Es), np.concatenate(Fs), np.concatenate(Ws)


def _chunked_loss(loss, params, ds, w, *, chunk: int = EVAL_CHUNK, states: bool = False,
                  frame_weights: Optional[np.ndarray] = None) -> float:
    """Mean of a jitted batch loss over a whole dataset, each chunk counted by its frames'
    weights (``frame_weights`` [n], default 1 each), as one batch of every frame would be."""
    chunk = eval_chunk(ds, chunk)
    weights = np.ones(ds.n_frames) if frame_weights is None else frame_weights
    total, count = 0.0, 0.0
    for start in range(0, ds.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, ds.n_frames))
        batch = make_batch(ds, idx, chunk, states=states, frame_weights=frame_weights)
        chunk_weight = float(weights[idx].sum())
        total += float(loss(params, batch, *w)) * chunk_weight
        count += chunk_weight
    return total / count


def normalize_params(model: EnergyModel, params, train_ds, mode: str):
    """Set shift/scale (and descriptor statistics) from the training data; returns
    (params, info). Everything here is data-derived and recorded in the run."""
    species = list(model.species)
    mask = train_ds.Z > 0
    info = {"mode": mode}
    p = dict(params)

    def like(name, value):
        # the initial leaf's dtype, and a strong type: a weak-typed scalar (jnp.asarray(1.5))
        # turns strong after the first optimiser step, and every jitted function that saw it
        # (the training step, predict) would compile a second time
        return jnp.asarray(value, dtype=params[name].dtype)

    if model.features is not None:
        cells = train_ds.periodic_cells()
        cell = None if cells is None else jnp.asarray(cells)
        systems = System(species=jnp.asarray(train_ds.Z), mask=jnp.asarray(mask), box=cell)
        G = np.asarray(_features_fn(model.features)(jnp.asarray(train_ds.R), systems))[mask]
        std = G.std(axis=0)
        p["g_mean"] = like("g_mean", G.mean(axis=0))
        p["g_std"] = like("g_std", np.where(std > 1e-8, std, 1.0))
    if mode == "species_lstsq":
        ref = species_reference_energies(train_ds.Z, train_ds.E, species)
        p["shift"] = like("shift", ref)
        p["scale"] = like("scale", force_rms(train_ds.F, mask))
        info.update(reference_energies_eV=dict(zip(map(int, species), map(float, ref))), scale_eV=float(p["scale"]))
    elif mode == "minmax":
        lo, hi = float(train_ds.E.min()), float(train_ds.E.max())
        n_mean = float(mask.sum(1).mean())
        p["scale"] = like("scale", (hi - lo) / 2)
        p["shift"] = like("shift", np.full(len(species), (hi + lo) / 2 / n_mean))
        info.update(energy_min_eV=lo, energy_max_eV=hi)
    if model.is_multistate:
        # diabatic diagonals start at the mean adiabatic excitation energies
        train_ds.require("E_states")
        exc = np.mean(train_ds.E_states - train_ds.E_states[:, :1], axis=0)
        p["state_offset"] = like("state_offset", exc)
        info["state_offset_eV"] = [float(x) for x in exc]
    if mode != "none":
        # Remove the model's own mean offset at initialisation (e.g. ⟨O⟩ ≈ -3 for singlets).
        E, _ = predict(model, p, train_ds)
        offset = float(np.mean((train_ds.E - E) / mask.sum(1)))
        p["shift"] = like("shift", p["shift"] + offset)
        info["offset_per_atom_eV"] = offset
    return p, info


# ----------------------------------------------------------------------------- loop
@dataclass
class TrainResult:
    model: EnergyModel
    params: dict
    history: list
    metrics: dict
    out: Path
    interrupted: bool
    seconds: float


def _stages(cfg: TrainConfig):
    full = {"quantum", "classical"}
    if cfg.staged and cfg.pretrain_epochs > 0:
        return [("pretrain", 0, cfg.pretrain_epochs, {"classical"}), ("end-to-end", cfg.pretrain_epochs, cfg.epochs, full)]
    return [("end-to-end", 0, cfg.epochs, full)]


def _stage_at(stages, epoch):
    for i, s in enumerate(stages):
        if s[1] <= epoch < s[2]:
            return i
    return len(stages) - 1


def _versions():
    from importlib.metadata import version

    import flax
    import optax

    from .. import __version__

    # PennyLane's version from its metadata: importing it costs seconds a state-vector run never needs
    return {"qdyn": __version__, "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "pennylane": version("pennylane"), "numpy": np.__version__}


class _Run(NamedTuple):
    """Everything a training run derives from its config and data before the first step."""

    model: EnergyModel
    model_cfg: dict
    train_ds: object
    val_ds: object
    test_ds: object
    params0: dict
    norm_info: dict
    multi: bool
    loss_fn: Callable  # of one member
    members: MemberAxis = MemberAxis()  # size 0: a single model
    step_loss_fn: Optional[Callable] = None  # the optimiser step's, when it differs (a device mesh)
    weighting: Optional[FrameWeighting] = None  # energy-based frame weights (None: every frame 1)


def _prepare(cfg: TrainConfig, data, mesh=None) -> tuple[object, _Run]:
    """(full dataset, run): split, build and check the model, normalise, build the loss (and,
    with a device ``mesh``, the step's loss that evaluates the model per device)."""
    ds = load_data(cfg.data) if data is None else data
    train_ds, val_ds, test_ds = split_data(ds, cfg.data)
    species = sorted({int(z) for z in np.unique(train_ds.Z) if z > 0})
    model_cfg = _model_config(cfg, species, train_ds)
    member = build_model(model_cfg, species=species)
    try:
        require_for_model(member.config, "train")  # before compiling: can this execution train?
    except QdynInputError as exc:
        raise ConfigError(str(exc)) from None
    check_frames(member, train_ds)  # host-side validation, before compiling anything
    multi = member.is_multistate
    if multi:
        train_ds.require("E_states")
        if train_ds.E_states.shape[1] != member.n_states:
            raise QdynInputError(f"{train_ds.source}: field 'E_states': model has {member.n_states} states, the data "
                                 f"{train_ds.E_states.shape[1]} (E_states)")
    members = MemberAxis(cfg.uncertainty.ensemble.size if cfg.uncertainty.method == "ensemble" else 0)
    model = ensemble_model(member, members.size) if members.size else member
    params0, norm_info = _initial_params(cfg, member, train_ds, members.size)
    loss_fn = build_loss(cfg, member, train_ds, species)
    # validation runs unsharded on host copies, at any size: only the step splits the batch
    step_loss_fn = None if mesh is None else build_loss(cfg, member, train_ds, species, mesh)
    return ds, _Run(model, model_cfg, train_ds, val_ds, test_ds, params0, norm_info, multi, loss_fn, members,
                    step_loss_fn, weighting_of(cfg, train_ds))


def _initial_params(cfg: TrainConfig, member: EnergyModel, train_ds, size: int):
    """(params, normalisation info) training starts from: one model's, or ``size`` members'
    stacked along a leading axis, each normalised on the training data."""
    keys = member_keys(jax.random.PRNGKey(cfg.seed), max(size, 1))
    parts = [normalize_params(member, member.init(k), train_ds, cfg.loss.normalization) for k in keys]
    if not size:
        return parts[0]
    info = dict(parts[0][1])
    if "offset_per_atom_eV" in info:  # the only member-dependent entry
        info["offset_per_atom_eV"] = [i["offset_per_atom_eV"] for _, i in parts]
    return stack([p for p, _ in parts]), info


def _warm_start(fresh, given):
    """``given`` as float arrays, refused unless it has the structure and shapes of ``fresh``."""
    f_leaves, f_def = jax.tree_util.tree_flatten(fresh)
    g_leaves, g_def = jax.tree_util.tree_flatten(given)
    shapes = lambda leaves: [np.shape(x) for x in leaves]  # noqa: E731
    if f_def != g_def or shapes(f_leaves) != shapes(g_leaves):
        raise ConfigError("init_params: the warm-start parameters do not fit this model (another family, size or "
                          "ensemble size)")
    return jax.tree_util.tree_unflatten(f_def, [jnp.asarray(g, dtype=jnp.asarray(f).dtype)
                                                for f, g in zip(f_leaves, g_leaves)])


def _make_step(cfg: TrainConfig, loss_fn: Callable, tx, members: MemberAxis, mesh=None) -> Callable:
    """The jitted optimiser step ``(params, opt_state, ema, batch, w_E, w_F, w_net, lr)`` (of
    every ensemble member at once: one compiled step ``vmap``-ed over the member axis). ``tx``
    runs at unit rate and the step scales its update by ``lr`` (:data:`~qdyn.train.optim.UNIT_RATE`),
    so runs that differ in schedule, length or peak rate share one compiled step.

    With a device ``mesh`` the same program runs data-parallel: the batch arrives split over
    the devices, the loss's sums over frames become all-reduces, and every output is pinned
    replicated so the next step's inputs have the shardings this one was compiled for."""

    def step(params, opt_state, ema, batch: Batch, w_E, w_F, w_net, lr):
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, w_E, w_F, w_net)
        upd, opt_state = tx.update(g, opt_state, params, value=loss)
        params = jax.tree_util.tree_map(lambda p, u: p + lr * u, params, upd)
        if cfg.optim.ema_decay is not None:
            d = cfg.optim.ema_decay
            ema = jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * p, ema, params)
        return params, opt_state, ema, loss, aux

    if mesh is None:  # an equal step compiled by an earlier train() call in this process is reused
        return shared_jit(members.step(step))
    return jax.jit(members.step(step), out_shardings=parallel.replicated(mesh))


def _fresh_state(opt_init: Callable, params, stage_idx: int) -> dict:
    return {
        "params": params,
        "opt_state": opt_init(params),
        "ema": params,
        "best_params": params,
        "counters": {"epoch": np.int64(0), "batch": np.int64(0), "step": np.int64(0),
                     "stage": np.int64(stage_idx), "bad_epochs": np.int64(0)},
        "best_val": np.float64(np.inf),
        # running sum of this epoch's batch losses, so a resumed epoch reports the same mean
        "epoch_loss_sum": np.float64(0.0),
    }


def _resolved_config(cfg: TrainConfig, data) -> dict:
    resolved = cfg.model_dump(mode="json")
    if data is not None:
        # cfg.data.path did not supply these frames: record what did, so the run's provenance
        # is not the default path (a CLI resume then fails clearly instead of loading it)
        name = data.metadata.get("name") or data.source
        resolved["data"]["path"] = f"<Dataset passed to train(): {name}, {data.n_frames} frames>"
    return resolved


class _Progress:
    """A rich progress bar with loss and ETA, or nothing."""

    def __init__(self, enabled: bool, name: str, total: int, done: int):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"), TextColumn("loss {task.fields[loss]:.4g}"),
                                TimeElapsedColumn(), TimeRemainingColumn(),
                                # stderr: stdout carries the command's JSON result
                                console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task(name, total=total, completed=done, loss=float("nan"))

    def step(self, loss: float, description: str):
        if self.bar is not None:
            self.bar.update(self.task, advance=1, loss=loss, description=description)

    def stop(self):
        if self.bar is not None:
            self.bar.stop()


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    from_prev: bool = False,
    progress: bool = True,
    max_steps: Optional[int] = None,
    data=None,
    init_params=None,
) -> TrainResult:
    """Train the model described by ``cfg``; write everything into ``out``.

    Args:
        cfg: validated :class:`TrainConfig`.
        out: run directory (config, checkpoints, params, metrics, plots).
        resume: continue from ``out/checkpoints/latest`` (``from_prev``: from ``prev``).
        progress: show a progress bar with loss and ETA.
        max_steps: stop after this many optimiser steps in this call, checkpointing exactly
            as on Ctrl-C (used to test resumption).
        data: an already loaded Dataset (else ``cfg.data`` is loaded).
        init_params: warm start: begin from these parameters (a finished run's, same model
            and shapes, e.g. the previous active-learning round) instead of fresh normalised
            ones; ignored on resume (the checkpoint holds the position).

    Ctrl-C checkpoints the current position and returns with ``interrupted=True``.

    A fresh start removes an earlier training run's outputs from ``out`` (the ``qdyn train``
    command refuses such a directory unless ``--overwrite``); a resume refuses a config that
    differs from the run's recorded one except in
    :data:`~qdyn.train.config.RESUMABLE_FIELDS`, naming the differing fields.
    """
    t_start = time.perf_counter()
    out = Path(out)
    if from_prev and not resume:
        raise ConfigError("from_prev picks the checkpoint a resume starts from: it needs resume=True")
    ckdir = out / "checkpoints"
    resolved = _resolved_config(cfg, data)
    if resume:  # refused before any data is loaded or anything compiled
        name = "prev" if from_prev else "latest"
        meta = ckpt.verify(ckdir, name=name)
        _check_resume(ckdir / f"{name}.json", meta, resolved, cfg)
    mesh = parallel.make_mesh(None if cfg.devices == 1 else cfg.devices)  # more devices than there are: refused
    _, run = _prepare(cfg, data, mesh)  # bad data or config fails here, before the run directory is touched
    trackers.check_available(cfg.logging)
    if init_params is not None:
        run = run._replace(params0=_warm_start(run.params0, init_params))
    if out.is_dir():
        rundir.clean_stale_temporaries(out)
        if not resume:
            rundir.clear(out, "training")
    stages = _stages(cfg)
    bs = min(cfg.batch_size, run.train_ds.n_frames)
    steps_per_epoch = -(-run.train_ds.n_frames // bs)
    labels = run.model.param_labels(run.params0)
    txs = [make_optimizer(cfg.optim, labels, trainable=groups) for *_, groups in stages]
    steps = [_make_step(cfg, run.step_loss_fn or run.loss_fn, tx, run.members, mesh) for tx in txs]

    history: list = []
    if resume:
        _check_data_derived(ckdir / f"{name}.json", meta, run.model_cfg)
        stage = int(meta["stage"])
        state, meta = ckpt.load(ckdir, _fresh_state(run.members.opt_init(txs[stage]), run.params0, stage), name=name)
        history = meta.get("history", [])
    else:
        state = _fresh_state(run.members.opt_init(txs[0]), run.params0, 0)
    out.mkdir(parents=True, exist_ok=True)
    if not resume or resolved != meta["config"]:
        # written once at a fresh start; again only when a resume changed a resumable field
        atomic_write_text(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    log = HistoryLog(out, history, trackers.open_trackers(cfg.logging, out, config=resolved,
                                                           first_epoch=len(history), resume=resume))

    def save_checkpoint(interrupted: bool = False):
        c = state["counters"]
        ckpt.save(ckdir, state, {"epoch": int(c["epoch"]), "batch": int(c["batch"]), "step": int(c["step"]),
                                  "stage": int(c["stage"]), "config": resolved, "model": run.model_cfg,
                                  "normalization": run.norm_info, "versions": _versions(), "history": history})
        log.refresh(history, plot_now=interrupted)

    bar = _Progress(progress, run.model.name, cfg.epochs * steps_per_epoch, int(state["counters"]["step"]))
    interrupted = False
    try:
        clock = _WallClock(t_start, history[-1].get("wall_s", 0.0) if history else 0.0)
        _epochs(cfg, run, state, history, stages, txs, steps, bs, max_steps, bar, save_checkpoint, log, clock, mesh)
    except KeyboardInterrupt:
        interrupted = True
        save_checkpoint(interrupted=True)
    finally:
        bar.stop()
        log.close()
    # An interrupted run returns where it stopped; a finished one its best (validation) params.
    final = state["params"] if interrupted or not np.isfinite(float(state["best_val"])) else state["best_params"]
    final = parallel.tree_to_host(final) if cfg.devices != 1 else final  # off the mesh, for metrics and files
    seconds = time.perf_counter() - t_start
    model = run.model
    n_trainable = count_params({k: v for k, v in final.items() if model.groups.get(k) != FIXED}) // max(run.members.size, 1)
    metrics: dict = {"model": model.name, "n_params": n_trainable, "interrupted": interrupted,
                     "train_seconds_this_call": seconds, "normalization": run.norm_info,
                     "sizes": {"train": run.train_ds.n_frames, "val": run.val_ds.n_frames, "test": run.test_ds.n_frames}}
    if run.weighting is not None:
        metrics["frame_weights"] = weighting_summary(run.weighting, run.train_ds)
    if not interrupted:
        _write_results(out, run, final, history, metrics, cfg.uncertainty)
    return TrainResult(model=model, params=final, history=history, metrics=metrics, out=out,
                       interrupted=interrupted, seconds=seconds)


class _WallClock:
    """Training wall time in seconds, summed over the calls of a resumed run."""

    def __init__(self, t_start: float, before: float):
        self.t_start, self.before = t_start, before

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self.t_start


def _refuse_differences(meta_path: Path, diffs: list[str]) -> None:
    if diffs:
        raise ConfigError(f"--resume: the config differs from the one the run was started with ({meta_path}): "
                          f"{'; '.join(diffs)}. Only {', '.join(RESUMABLE_FIELDS)} may change on resume; "
                          "start a new run for the rest")


def _check_resume(meta_path: Path, meta: dict, resolved: dict, cfg: TrainConfig) -> None:
    """Refuse to continue a checkpoint under another config (naming every differing field)
    or with fewer epochs than it has already done."""
    _refuse_differences(meta_path, config_differences(meta.get("config", {}), resolved, allowed=RESUMABLE_FIELDS))
    if cfg.epochs < int(meta["epoch"]):
        raise ConfigError(f"--resume: the run has done {meta['epoch']} epochs ({meta_path}); epochs = {cfg.epochs} "
                          "is fewer")


def _check_data_derived(meta_path: Path, meta: dict, model_cfg: dict) -> None:
    """The model settings derived from the data (species, core radii) must match too."""
    diffs = config_differences(meta.get("model", {}), model_cfg)
    _refuse_differences(meta_path, [f"model (from the data) {d}" for d in diffs])


def _epochs(cfg, run: _Run, state, history, stages, txs, steps, bs, max_steps, bar, save_checkpoint, log, clock,
            mesh=None):
    """The host loop over epochs and minibatches; raises KeyboardInterrupt at ``max_steps``.

    With a device ``mesh``, parameters and optimiser state live replicated on it and every
    batch is split over it, padded with zero-weight frames to a multiple of its size (the
    loss is a weighted mean, so padding changes nothing but the shape); validation runs on
    host copies of the parameters."""
    mean_loss = run.members.loss(run.loss_fn)
    val_loss = shared_jit(lambda p, b, wE, wF, wn: mean_loss(p, b, wE, wF, wn)[0])
    steps_per_epoch = -(-run.train_ds.n_frames // bs)
    bs_devices = parallel.padded_size(bs, mesh)
    train_w, val_w = frame_weights(run.weighting, run.train_ds), frame_weights(run.weighting, run.val_ds)
    rates = [learning_rates(cfg.optim, (e1 - e0) * steps_per_epoch) for _, e0, e1, _ in stages]
    for k in ("params", "opt_state", "ema"):
        state[k] = parallel.put_replicated(state[k], mesh)
    steps_this_call = 0
    while int(state["counters"]["epoch"]) < cfg.epochs:
        c = state["counters"]
        epoch = int(c["epoch"])
        si = _stage_at(stages, epoch)
        if si != int(c["stage"]):  # stage change: fresh optimiser state for the new groups
            state["opt_state"] = parallel.put_replicated(run.members.opt_init(txs[si])(state["params"]), mesh)
            c["stage"] = np.int64(si)
        w = loss_weights(cfg, epoch)
        first_step = stages[si][1] * steps_per_epoch  # of the stage: its schedule starts there
        order = batches_of(run.train_ds.n_frames, bs, seed=cfg.seed, epoch=epoch)
        for b in range(int(c["batch"]), len(order)):
            if max_steps is not None and steps_this_call >= max_steps:
                raise KeyboardInterrupt
            batch = parallel.put_sharded(make_batch(run.train_ds, order[b], bs_devices, states=run.multi,
                                                    frame_weights=train_w), mesh)
            lr = float(rates[si][int(c["step"]) - first_step])
            p, o, e, loss, _ = steps[si](state["params"], state["opt_state"], state["ema"], batch,
                                         *parallel.put_replicated((*w, lr), mesh))
            state["params"], state["opt_state"], state["ema"] = p, o, e
            c["batch"] = np.int64(b + 1)
            c["step"] = np.int64(int(c["step"]) + 1)
            steps_this_call += 1
            loss = float(np.mean(loss))  # an ensemble's: the mean over members
            state["epoch_loss_sum"] = np.float64(float(state["epoch_loss_sum"]) + loss)
            bar.step(loss, f"{run.model.name} [{stages[si][0]}] epoch {epoch + 1}")
        record = {"epoch": epoch + 1, "stage": stages[si][0], "train_loss": float(state["epoch_loss_sum"]) / len(order)}
        state["epoch_loss_sum"] = np.float64(0.0)
        eval_params = state["ema"] if cfg.optim.ema_decay is not None else state["params"]
        if mesh is not None:  # evaluation is not sharded: it runs on a host copy
            eval_params = parallel.tree_to_host(eval_params)
        score = _validate(run, eval_params, val_loss, w, record, val_w)
        record["lr"] = float(rates[si][max(int(c["step"]) - 1 - first_step, 0)])  # of the epoch's last step
        record["wall_s"] = clock()
        if score < float(state["best_val"]):
            state["best_val"] = np.float64(score)
            state["best_params"] = eval_params
            c["bad_epochs"] = np.int64(0)
        else:
            c["bad_epochs"] = np.int64(int(c["bad_epochs"]) + 1)
        history.append(record)
        log.append(record)
        c["epoch"] = np.int64(epoch + 1)
        c["batch"] = np.int64(0)
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            save_checkpoint()
        if cfg.early_stopping_patience is not None and int(c["bad_epochs"]) >= cfg.early_stopping_patience:
            break


def _validate(run: _Run, params, val_loss, w, record: dict, val_w: Optional[np.ndarray] = None) -> float:
    """Add validation metrics to the epoch's record; returns the score early stopping uses (the
    validation loss, frames weighted as in training; the errors are unweighted)."""
    if not run.val_ds.n_frames:
        return record["train_loss"]
    E, F = predict(run.model, params, run.val_ds)
    m = error_metrics(E, run.val_ds.E, F, run.val_ds.F, run.val_ds.Z > 0)
    record["val_loss"] = _chunked_loss(val_loss, params, run.val_ds, w, states=run.multi, frame_weights=val_w)
    record["val_energy_mae_meV"] = m["energy_mae_meV"]
    record["val_force_mae_meV_per_A"] = m["force_mae_meV_per_A"]
    return record["val_loss"]


def _write_results(out: Path, run: _Run, final, history, metrics: dict, uncertainty) -> None:
    """Parameters, the uncertainty estimate fitted and calibrated after training, metrics per
    split, parity plot, learning curve, and last ``model.json``, which marks the run finished
    (a run killed before it is resumable, not loadable)."""
    model = run.model
    ckpt.save_params(out / "params.msgpack", final)
    uq = {}
    if uncertainty.method != "none":
        uq["uncertainty"], metrics["uncertainty"] = fit_for_run(uncertainty, model, final, run.train_ds, run.val_ds,
                                                                run.test_ds, out)
    for name, part in (("train", run.train_ds), ("val", run.val_ds), ("test", run.test_ds)):
        if not part.n_frames:
            continue
        E, F = predict(model, final, part)
        m = error_metrics(E, part.E, F, part.F, part.Z > 0)
        if run.multi:
            Es, Fs, _ = predict_states(model, final, part)
            m["states"] = multistate_metrics(Es, part.E_states, Fs, part.F_states, part.Z > 0)
        metrics[name] = m
        if name == "test" or (name == "val" and not run.test_ds.n_frames):
            parity_plot(out / f"parity_{name}.png", E, part.E, F, part.F, part.Z > 0, title=model.name)
    refresh_history(out, history)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(out / "model.json", json.dumps({"model": run.model_cfg, "normalization": run.norm_info,
                                                      "versions": _versions(), **uq}, indent=2))


def load_run(run_dir: str | Path, *, execution: Optional[dict] = None):
    """(model, params, info) of a finished run directory; the parameters are checked against
    their checksum and the model's shapes. ``execution`` replaces some of a quantum model's
    execution settings (:func:`qdyn.quantum.execution.with_execution`).

    Raises:
        CheckpointError: not a finished run (missing, unfinished, or damaged files).
    """
    run_dir = Path(run_dir)
    info_path = run_dir / "model.json"
    if not run_dir.is_dir():
        raise ckpt.CheckpointError(f"{run_dir} is not a finished qdyn run (no such directory)")
    if not info_path.exists():
        if (run_dir / "checkpoints" / "latest.json").exists():
            done = json.loads((run_dir / "checkpoints" / "latest.json").read_text()).get("epoch", "?")
            raise ckpt.CheckpointError(f"{run_dir} is an unfinished training run (checkpoint after epoch {done}, "
                                       f"no model.json); finish it with `qdyn train --out {run_dir} --resume`")
        raise ckpt.CheckpointError(f"{run_dir} is not a finished qdyn run (no model.json)")
    try:
        info = json.loads(info_path.read_text())
        mc = with_execution(info["model"], execution or {})
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ckpt.CheckpointError(f"{info_path} is corrupt ({type(e).__name__}: {e})") from None
    model = rebuild_model(build_model(mc, species=mc.get("species", ())), info)  # an ensemble if it was one
    params = ckpt.load_params(run_dir / "params.msgpack", model.init(jax.random.PRNGKey(0)))
    return model, params, info


def evaluate(model: EnergyModel, params, ds) -> dict:
    """Metrics of a model on any dataset (total energies in eV, forces in eV/Å)."""
    ds.require("E")
    check_frames(model, ds)
    E, F = predict(model, params, ds)
    m = error_metrics(E, ds.E, F, ds.F, ds.Z > 0)
    if model.is_multistate and ds.E_states is not None:
        Es, Fs, _ = predict_states(model, params, ds)
        m["states"] = multistate_metrics(Es, ds.E_states, Fs, ds.F_states, ds.Z > 0)
    return m
