"""The active-learning loop: explore → select → label → retrain, every step checkpointed.

Round r (directory ``out/round_RR/``):

1. **train** (``train/``): the model of this round on the seed frames plus every frame labelled
   so far, warm-started from round r-1's parameters (round 0 from fresh ones); an interrupted
   training resumes from its checkpoint.
2. **test**: errors and σ on the fixed test set (``n_test`` seed frames held out once), and on
   ``test_data`` when given (a second held-out set, e.g. the explored system alone).
3. **explore** (``explore/``): batched MD with the uncertainty watchdog
   (:mod:`qdyn.md.watchdog`); every sampled frame of every replica is a candidate, with its
   σ. If no replica stopped, the model survived ``n_steps × dt_fs`` and the loop ends.
4. **select** (``selected.npz``): the stopped replicas' last trusted frames, then the most
   uncertain candidates spread out in descriptor space (:mod:`qdyn.learn.select`).
5. **label** (``labels.npz``): qdyn's labellers through :func:`qdyn.data.label_run.label_dataset`
   (parallel workers, per-frame cache); failed frames are dropped and counted.

Each step's output is written atomically and marks the step done, and ``learn.json`` records
the finished rounds: after Ctrl-C or a kill, ``resume=True`` redoes only the step that was
running (training from its checkpoint, labelling from the label cache, MD from its start:
it is deterministic given the round's parameters and seed), so nothing is lost or relabelled.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.io import atomic_savez, atomic_write_text, load_npz
from ..validation import QdynInputError
from .config import RESUMABLE_FIELDS, LearnConfig, changed_fixed_fields
from .select import frame_descriptors, select_random, select_uncertain

_log = logging.getLogger("qdyn")
STATE_FILE = "learn.json"


def _seed_split(cfg: LearnConfig):
    """(training pool, fixed test set) of the seed data."""
    from ..train.data import load_data

    seed = load_data(cfg.train.data)
    if seed.n_frames <= cfg.n_test + 2:
        raise QdynInputError(f"the seed data has {seed.n_frames} usable frames; n_test = {cfg.n_test} leaves fewer "
                             "than 3 to train on")
    perm = np.random.default_rng(cfg.split_seed).permutation(seed.n_frames)
    return seed.subset(np.sort(perm[cfg.n_test:])), seed.subset(np.sort(perm[: cfg.n_test]))


def _extra_test_set(cfg: LearnConfig):
    """``cfg.test_data`` read as the seed data is (its units, keys, plausibility check), or None."""
    from ..train.data import load_data

    if cfg.test_data is None:
        return None
    return load_data(cfg.train.data.model_copy(update={"path": cfg.test_data}))


def _train_config(cfg: LearnConfig, n_frames: int, warm: bool):
    """The round's training config; ``warm``: started from the previous round's parameters."""
    n_val = max(1, int(round(cfg.val_fraction * n_frames)))
    data = cfg.train.data.model_copy(update={"n_train": n_frames - n_val, "n_val": n_val, "n_test": 0})
    update = {"data": data}
    if warm and cfg.warm_start_epochs is not None:
        update.update(epochs=cfg.warm_start_epochs, staged=False)
    return cfg.train.model_copy(update=update)


def _round_dir(out: Path, r: int) -> Path:
    return out / f"round_{r:02d}"


def _train_round(cfg, rdir: Path, data, init_params, progress: bool):
    """(model, params) of this round: a finished run is loaded, an interrupted one resumed."""
    from ..train import load_run, train

    run = rdir / "train"
    if (run / "model.json").exists():
        m, p, _ = load_run(run)
        return m, p
    resume = (run / "checkpoints" / "latest.json").exists()
    res = train(_train_config(cfg, data.n_frames, warm=init_params is not None), run, resume=resume, data=data,
                progress=progress,
                init_params=None if resume else init_params)
    if res.interrupted:
        raise KeyboardInterrupt
    return res.model, res.params


def _test_record(model, params, run_dir: Path, test) -> dict:
    from ..train import evaluate
    from ..uncertainty import load_estimator, predict_with_uncertainty

    m = evaluate(model, params, test)
    pred = predict_with_uncertainty(model, params, test, load_estimator(run_dir, params))
    return {"energy_mae_meV": m["energy_mae_meV"], "force_mae_meV_per_A": m["force_mae_meV_per_A"],
            "force_rmse_meV_per_A": m["force_rmse_meV_per_A"], "mean_energy_std_eV": float(np.mean(pred.E_std)),
            "mean_force_std_eV_per_A": float(np.mean(pred.F_std[test.Z > 0]))}


# the quantile of the training frames' σ a relative threshold multiplies: a high one (σ inside
# the data), not the maximum, which the few hard frames the loop itself labelled would set (on
# the water run: q90 0.73 eV/Å, max 2.28 eV/Å over 101 box frames)
REFERENCE_QUANTILE = 0.9


def force_std_reference(model, params, estimator, frames) -> float:
    """The :data:`REFERENCE_QUANTILE` quantile over ``frames`` (a Dataset, e.g. the training
    frames) of each frame's largest per-atom force σ [eV/Å]: the scale of σ inside the model's
    data, which a relative watchdog threshold multiplies."""
    from ..uncertainty import predict_with_uncertainty

    F_std = predict_with_uncertainty(model, params, frames, estimator).F_std
    return float(np.quantile(F_std.max(axis=-1), REFERENCE_QUANTILE))


def _frames_of(system, R, source: str = "<memory>"):
    """``R`` [k, n, 3] Å as a label-less Dataset of ``system``'s atoms (and box when periodic)."""
    from ..data import Dataset

    Z_row, n = np.asarray(system.species), len(R)
    cell = None if system.box is None else np.broadcast_to(np.asarray(system.box, float), (n, 3, 3)).copy()
    return Dataset(R=np.asarray(R, float), Z=np.broadcast_to(Z_row, (n, len(Z_row))).copy(), cell=cell,
                   pbc=None if cell is None else np.ones((n, 3), bool), source=source)


def _force_threshold(e, model, params, estimator, train_R, R0, system) -> dict:
    """The round's force-σ threshold [eV/Å]: ``max_force_std``, or ``max_force_std_relative`` ×
    the σ reference on the training frames of the explored composition (the start structure
    when there are none)."""
    if e.max_force_std_relative is None:
        return {"max_force_std_eV_per_A": e.max_force_std}
    frames = train_R if len(train_R) else np.asarray(R0)[None]
    ref = force_std_reference(model, params, estimator, _frames_of(system, frames))
    return {"max_force_std_eV_per_A": e.max_force_std_relative * ref, "force_std_reference_eV_per_A": ref,
            "reference_frames": "training frames of the explored composition" if len(train_R) else "start structure",
            "n_reference_frames": int(len(frames))}


def _explore(cfg: LearnConfig, r: int, rdir: Path, model, params, run_dir: Path, progress, train_R) -> dict:
    """Run (or load) the round's MD; returns the candidate arrays and the MD summary.
    ``train_R``: the round's training frames of the explored composition (relative threshold)."""
    done = rdir / "candidates.npz"
    if done.exists():
        z = load_npz(done)
        return {"R": z["R"], "sigma": z["sigma"], "trusted": z["trusted"], "summary": json.loads(str(z["summary"]))}
    import jax

    from ..md import MDOutput, make_watchdog, model_energy_fn, run_md
    from ..md.adapters import model_neighbor_fn
    from ..structures import load_structure
    from ..uncertainty import load_estimator

    e = cfg.explore
    R0, system = load_structure(e.structure, frame=e.frame)
    model.check(R0, system)
    estimator = load_estimator(run_dir, params)
    threshold = _force_threshold(e, model, params, estimator, train_R, R0, system)
    wd = make_watchdog(model, estimator, max_force_std=threshold["max_force_std_eV_per_A"],
                       max_energy_std_per_atom=e.max_energy_std_per_atom)
    # a periodic box: pairs within the cutoff from a JAX-MD neighbour list (None: all pairs)
    neighbor_fn = model_neighbor_fn(model, params, R0, system, skin=e.neighbor_skin_A)
    res = run_md(model_energy_fn(model.apply), params, R0, system, e.md_settings(),
                 output=MDOutput(out_dir=rdir / "explore", trajectory_formats=("extxyz",), stride=e.stride,
                                 frames_per_block=e.frames_per_block, store_replicas=e.replicas, progress=progress),
                 key=jax.random.PRNGKey(e.seed + r), watchdog=wd, neighbor_fn=neighbor_fn)
    F, Rp, n = res.position.shape[:3]
    events = res.watchdog["events"]
    stop_fs = {ev["replica"]: ev["last_trusted_time_fs"] for ev in events}
    reached = [stop_fs.get(k, e.n_steps * e.dt_fs) for k in range(Rp)]
    trusted = np.stack([_trusted_frame(res, ev["replica"], ev["last_trusted_step"], R0) for ev in events]) \
        if events else np.zeros((0, n, 3))
    summary = {"stopped": len(events), "replicas": Rp, "target_fs": e.n_steps * e.dt_fs,
               "md_time_reached_fs": {"min": float(min(reached)), "mean": float(np.mean(reached))},
               "max_force_std_eV_per_A": _finite_max(res.force_std), "events": events, "threshold": threshold,
               "md_seconds": res.timings["total_s"], "neighbor_list": neighbor_fn is not None}
    out = {"R": res.position.reshape(F * Rp, n, 3), "sigma": res.force_std.reshape(F * Rp), "trusted": trusted,
           "summary": summary}
    atomic_savez(done, {"R": out["R"], "sigma": out["sigma"], "trusted": trusted,
                        "summary": np.array(json.dumps(summary))})
    return out


def _same_composition(data, system) -> np.ndarray:
    """Positions [k, n, 3] Å of the training frames made of ``system``'s atoms (the seed data
    may mix sizes, e.g. clusters beside a box): the reference of the diversity selection."""
    Z = np.asarray(system.species)
    if data.Z.shape[1] < len(Z):
        return np.zeros((0, len(Z), 3))
    Zd = data.Z[:, : len(Z)]
    tail_empty = (data.Z[:, len(Z):] == 0).all(axis=1)
    same = (Zd == Z).all(axis=1) & tail_empty
    return data.R[same, : len(Z)]


def _trusted_frame(res, replica: int, step: int, R0):
    """The positions of a stopped replica's last trusted frame (its step; the start at 0)."""
    hit = np.flatnonzero(res.step == step)
    return np.asarray(R0 if not len(hit) else res.position[hit[0], replica])


def _finite_max(x) -> Optional[float]:
    x = np.asarray(x, float)
    return float(np.nanmax(x)) if np.isfinite(x).any() else None


def _select(cfg: LearnConfig, r: int, rdir: Path, model, cand: dict, train_R, system) -> np.ndarray:
    """Positions [k, n, 3] Å to label this round (stored in ``selected.npz``)."""
    done = rdir / "selected.npz"
    if done.exists():
        return load_npz(done)["R"]
    s = cfg.select
    # replicas stopped at their first frame all share the start structure: label it once
    trusted = np.unique(cand["trusted"], axis=0) if len(cand["trusted"]) else cand["trusted"]
    forced = trusted[: s.n_per_round] if s.method == "uncertainty" else trusted[:0]
    n_left = s.n_per_round - len(forced)
    if s.method == "random":
        idx = select_random(cand["sigma"], n_left, seed=s.seed + r)
    else:
        X = frame_descriptors(model, cand["R"], system)
        ref = frame_descriptors(model, np.concatenate([train_R, forced]), system)
        idx = select_uncertain(cand["sigma"], X, n_left, pool_factor=s.pool_factor, reference=ref) if n_left else \
            np.zeros(0, int)
    R = np.concatenate([forced, cand["R"][idx]])
    atomic_savez(done, {"R": R, "candidate_index": idx, "sigma": cand["sigma"][idx], "forced": len(forced)})
    return R


def _label(cfg: LearnConfig, rdir: Path, R, system, labeler, progress) -> tuple[object, dict]:
    """(labelled Dataset, record) of this round (frames of ``system``: its species, and its
    box when periodic); ``labels.npz`` marks it done."""
    from ..data import read, write
    from ..data.label_run import label_dataset

    done = rdir / "labels.npz"
    if done.exists():
        ds = read(done)
        return ds, ds.metadata.get("learn_label_record", {})
    configs = _frames_of(system, R, source=str(rdir / "selected.npz"))
    t = time.perf_counter()
    cached = {}

    def count(done, total, n_from_cache):
        cached["n"] = n_from_cache
        if progress is not None:
            progress(done, total, n_from_cache)

    labelled = label_dataset(configs, labeler, workers=cfg.labeler.workers, cache_dir=cfg.labeler.cache_dir,
                             progress=count)
    kept, failed = labelled.drop_failed()
    record = {"labels_added": int(kept.n_frames), "labels_failed": int(len(failed)),
              "label_seconds": time.perf_counter() - t, "from_cache": cached.get("n", 0)}
    kept.metadata["learn_label_record"] = record
    write(kept, done)
    return kept, record


def run_learning(cfg: LearnConfig, out, *, resume: bool = False, labeler=None, progress: bool = True,
                 on_round: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or resume) the active-learning loop of ``cfg`` in ``out``; returns the report.

    Args:
        cfg: a validated :class:`~qdyn.learn.config.LearnConfig`.
        out: the run directory (rounds, ``learn.json``, report files).
        resume: continue a run in ``out`` (refused if its config differs in anything but
            ``max_rounds``).
        labeler: a :class:`qdyn.data.labelers.Labeler` instead of ``cfg.labeler`` (tests,
            custom methods; picklable when ``cfg.labeler.workers`` ≥ 1).
        progress: progress bars and MD progress lines.
        on_round: called with each finished round's record.

    Raises:
        KeyboardInterrupt: after Ctrl-C, with every finished step kept (resume then).
        QdynInputError: a fresh start in a directory that holds a run, or a resume that
            does not match.
    """
    from ..data import Dataset

    out = Path(out)
    resolved = cfg.model_dump(mode="json")
    state = _load_state(out, resolved, resume)
    pool, test = _seed_split(cfg)
    extra_test = _extra_test_set(cfg)
    from ..structures import load_structure

    R0, system = load_structure(cfg.explore.structure, frame=cfg.explore.frame)
    labeler = labeler if labeler is not None else cfg.labeler.build(system.box)
    added = [_label(cfg, _round_dir(out, i), None, None, labeler, None)[0] for i in range(len(state["rounds"]))
             if (_round_dir(out, i) / "labels.npz").exists()]
    params = None
    if state["rounds"]:
        from ..train import load_run

        _, params, _ = load_run(_round_dir(out, len(state["rounds"]) - 1) / "train")
    md_progress = None if not progress else _md_progress
    r = len(state["rounds"])
    while r < cfg.max_rounds and not state.get("converged"):
        rdir = _round_dir(out, r)
        rdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = Dataset.concatenate([pool, *added], metadata=pool.metadata) if added else pool
        model, params = _train_round(cfg, rdir, data, params, progress)
        record = {"round": r, "n_train_pool": int(data.n_frames),
                  "test": _test_record(model, params, rdir / "train", test)}
        if extra_test is not None:
            record["test_data"] = {"path": cfg.test_data, "n_frames": int(extra_test.n_frames),
                                   **_test_record(model, params, rdir / "train", extra_test)}
        train_R = _same_composition(data, system)
        cand = _explore(cfg, r, rdir, model, params, rdir / "train", md_progress, train_R)
        record["explore"] = cand["summary"]
        converged = cand["summary"]["stopped"] == 0
        record["labels_added"] = 0
        if not converged:
            sel = _select(cfg, r, rdir, model, cand, train_R, system)
            new, lab = _label(cfg, rdir, sel, system, labeler, None)
            record.update(lab)
            added.append(new)
        record["seconds"] = time.perf_counter() - t0
        state["rounds"].append(record)
        state["converged"] = converged
        _save_state(out, state)
        if on_round is not None:
            on_round(record)
        r += 1
    from .report import write_report

    return write_report(out, state)


def _md_progress(info: dict) -> None:
    sigma = info.get("max_force_std")
    print(f"  MD t = {info['time_ps']:7.3f} ps  T = {info['temperature_K']:7.1f} K  max σ_F = "
          f"{'–' if sigma is None else f'{sigma:.3f}'} eV/Å  stopped: {info.get('stopped', 0)}", flush=True)


def _load_state(out: Path, resolved: dict, resume: bool) -> dict:
    path = out / STATE_FILE
    if not resume:
        if path.exists():
            raise QdynInputError(f"{out} already holds an active-learning run ({STATE_FILE}); continue it with "
                                 "--resume or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        state = {"config": resolved, "rounds": [], "converged": False}
        _save_state(out, state)
        return state
    if not path.exists():
        raise QdynInputError(f"--resume: {out} holds no active-learning run (no {STATE_FILE})")
    state = json.loads(path.read_text())
    # the stored config read by today's code: options added since then take their defaults
    try:
        before = LearnConfig.model_validate(state["config"]).model_dump(mode="json")
    except ValueError as exc:
        raise QdynInputError(f"--resume: the run's config ({path}) is no longer valid: {exc}") from None
    diff = changed_fixed_fields(before, resolved)
    if diff:
        raise QdynInputError(f"--resume: the config differs from the run's ({path}) in {', '.join(diff)}; a resume "
                             "may change only how later rounds explore, select and train "
                             f"({', '.join(RESUMABLE_FIELDS)})")
    if resolved != before:  # later rounds run the new schedule: say from which round
        state.setdefault("config_history", []).append({"from_round": len(state["rounds"]),
                                                       "previous": state["config"]})
    state["config"] = resolved
    return state


def _save_state(out: Path, state: dict) -> None:
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2))
