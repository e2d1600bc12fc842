"""Liquid water at GFN2-xTB by ``qdyn learn``: 32 H2O in the shipped periodic box, NVT 300 K,
until the model's MD runs the target time (10 ps) without the watchdog stopping it.

The loop (``qdyn.learn.run_learning``) starts from the shipped data only — the 50 GFN2-xTB box
frames (``water_box32``) and every ``--cluster-stride``-th cluster frame n ≤ 10
(``water_clusters`` in a 25 Å cell), the seed set of ``benchmarks/liquid_water.py`` without its
hand-made rounds — and adds, per round, frames its own MD found uncertain, labelled at GFN2-xTB
(tblite) in the box. The model is the hybrid of ``liquid_water.py`` (power spectrum, 4-qubit
re-uploading circuit ∥ MLP, core-repulsion wall) with a last-layer Laplace uncertainty (one
training per round; an ensemble would be K).

Per round the script reports: labels added, test error on the fixed held-out seed frames, mean
test σ, the MD time the replicas reached, and the free-H count of the explored frames (an H
farther than 1.25 Å from every O has left its molecule; minimum image). The run directory is
resumable: run the script again with the same arguments (it resumes), or with
``--max-rounds`` raised to go on.

    nice -n 5 python benchmarks/active_learning_water.py --out runs/al-water --replicas 2 \\
        --max-force-std-relative 2.0 --warm-start-epochs 10 --max-rounds 16 --workers 2
    python benchmarks/active_learning_water.py --out runs/al-water ... --report-only --recheck 100
    python benchmarks/active_learning_water.py --smoke --out /tmp/al-smoke   (tiny: checks the wiring)

Writes ``benchmarks/results/active_learning_water.{json,png}`` and its section of
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn.plotting import save_figure  # noqa: E402

FREE_H_A = 1.25  # Å: an H with no O this close has left its molecule (liquid_water.py's criterion)
# hand-run rounds of benchmarks/liquid_water.py (docs: benchmarks/transfer.md): frames labelled
# at GFN2-xTB beyond the shipped seed data, 40 + 30 stretched, 40, 40 minus 33 above the energy cap
HAND_RUN_LABELS = {"labelled": 150, "trained_on": 117, "rounds": 3}
# box test set: hand-run model-MD frames within this much of the shipped box's lowest energy
BOX_TEST_CAP_EV_PER_MOLECULE = 0.25
N_MOLECULES = 32  # of the shipped box


def learn_config(args, seed_path: Path, box_test_path: Path):
    """The :class:`~qdyn.learn.LearnConfig` of the run (``--smoke``: a tiny BPNN, a few steps)."""
    from liquid_water import MODEL

    from qdyn.learn import LearnConfig

    if args.smoke:
        model = {"family": "bpnn", "hidden": [4], "n_radial": 3, "cutoff": 4.0, "descriptor": "power_spectrum"}
        train = {"epochs": 2, "batch_size": 16}
    else:
        model = MODEL
        train = {"epochs": args.epochs, "staged": True, "pretrain_epochs": args.pretrain_epochs, "batch_size": 8,
                 "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.05}}
    raw = {
        "train": {"model": model, "data": {"path": str(seed_path)}, "seed": 0,
                  "uncertainty": {"method": "laplace"}, "checkpoint_every": 5, **train},
        # the shipped box's own labeller settings (water_box32 metadata): the same reference
        "labeler": {"method": "GFN2-xTB", "max_cycle": 250, "workers": args.workers},
        "explore": {"structure": "shipped:water_box32", "frame": 0, "ensemble": "nvt", "temperature_K": 300.0,
                    "dt_fs": 0.5, "n_steps": args.steps, "replicas": args.replicas, "stride": args.stride,
                    "frames_per_block": args.frames_per_block, "friction_per_fs": 0.01,
                    **({"max_force_std_relative": args.max_force_std_relative} if args.max_force_std_relative
                       else {"max_force_std": args.max_force_std})},
        "select": {"method": "uncertainty", "n_per_round": args.per_round},
        "max_rounds": args.max_rounds, "n_test": args.n_test, "warm_start_epochs": args.warm_start_epochs,
        "test_data": None if args.smoke else str(box_test_path),
    }
    return LearnConfig.model_validate(raw)


def write_seed_data(path: Path, cluster_stride: int, smoke: bool) -> None:
    """The shipped box + cluster frames as one file (the loop reads its seed set from a path)."""
    from liquid_water import training_data

    from qdyn.data import write

    if path.exists():
        return
    ds = training_data(cluster_stride=cluster_stride)
    if smoke:
        ds = ds.subset(np.arange(0, ds.n_frames, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    write(ds, path)


def write_box_test(path: Path) -> None:
    """Held-out GFN2-xTB frames of the box alone, which the loop never trains on (its fixed test
    set, drawn from the seed, is mostly clusters): the model-MD frames of the hand-run rounds
    (``liquid_water.AUGMENT``) that are still a 300 K liquid — no free H and an energy within
    :data:`BOX_TEST_CAP_EV_PER_MOLECULE` per molecule of the shipped box's lowest. (The first
    hand-run models' MD broke or heated up: those frames lie 26-33 eV above; rounds 2-3 lie
    within ±2 eV of the shipped frames.)"""
    from liquid_water import AUGMENT

    from qdyn.data import Dataset, load_shipped, read, write

    if path.exists():
        return
    act, box = read(AUGMENT), load_shipped("water_box32")
    n_mol = int(act.extras["n_molecules"][0])
    assert n_mol == N_MOLECULES
    keep = ((act.extras["origin"] == "model_md") & np.isfinite(act.E)
            & (free_h(act.R, act.Z[0], act.cell[0]) == 0)
            & (act.E - box.E.min() < BOX_TEST_CAP_EV_PER_MOLECULE * n_mol))
    ds = act.subset(np.flatnonzero(keep))
    meta = {**ds.metadata, "description": f"held-out GFN2-xTB box frames: the model-MD frames of "
                                          f"{AUGMENT.name} with no free H and E - min(water_box32) < "
                                          f"{BOX_TEST_CAP_EV_PER_MOLECULE} eV × {n_mol} (active_learning_water.py)"}
    write(Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, cell=ds.cell, pbc=ds.pbc, metadata=meta), path)


def free_h(R, Z, box) -> np.ndarray:
    """[frames] number of H atoms with no O within FREE_H_A (minimum image in a cubic ``box``)."""
    L = np.diag(np.asarray(box, float))
    d = R[:, Z == 1][:, :, None] - R[:, Z == 8][:, None]
    d -= L * np.round(d / L)
    return (np.linalg.norm(d, axis=-1).min(-1) > FREE_H_A).sum(-1)


EQUILIBRATION_PS = 1.0  # of the converged round's MD, left out of g(r) (liquid_water.py's choice)


def final_liquid(out: Path, rnd: int, stride_fs: float) -> dict:
    """Structure of the converged round's MD (every replica, every stored frame): the largest
    distance of any H to its nearest O, and the O–O g(r) after :data:`EQUILIBRATION_PS`, as
    ``liquid_water.py`` measures its hand-trained liquid."""
    from qdyn.data import load_shipped
    from qdyn.data.io import load_npz
    from qdyn.md.analysis import radial_distribution

    box = load_shipped("water_box32")
    Z, L = box.Z[0], np.diag(box.cell[0])
    cand = load_npz(out / f"round_{rnd:02d}" / "candidates.npz")
    md = json.loads((out / f"round_{rnd:02d}" / "explore" / "md.json").read_text())
    X = np.asarray(cand["R"], float).reshape(-1, md["replicas"], len(Z), 3)  # [frames, replicas, n, 3]
    d = X[..., Z == 1, None, :] - X[..., None, Z == 8, :]
    d -= L * np.round(d / L)
    nearest_o = np.linalg.norm(d, axis=-1).min(-1)
    t_ps = np.arange(1, len(X) + 1) * stride_fs / 1e3  # stored frames start one stride in
    prod = X[t_ps >= EQUILIBRATION_PS].reshape(-1, len(Z), 3)
    r, g = radial_distribution(prod, Z, L, pair=(8, 8), n_bins=120)
    first = (r > 2.2) & (r < 3.4)
    return {"round": rnd, "frames": int(X.shape[0] * X.shape[1]), "max_nearest_OH_A": float(nearest_o.max()),
            "first_OO_peak_A": float(r[first][np.argmax(g[first])]), "first_OO_peak_g": float(g[first].max()),
            "temperature_mean_K": md["mean_temperature_K"], "md_timings": md["timings"]}


def recheck(out: Path, cfg, seed: int) -> dict:
    """The converged round's exploration again with another ``explore.seed`` (new velocities and
    thermostat noise, same model and threshold): is surviving the target time a lucky draw?
    Stored in ``out/recheck_seed{seed}`` (a second call reads it back)."""
    from qdyn.data import Dataset, read
    from qdyn.learn.loop import _explore, _md_progress, _same_composition, _seed_split
    from qdyn.structures import load_structure
    from qdyn.train import load_run

    state = json.loads((out / "learn.json").read_text())
    last = len(state["rounds"]) - 1
    cfg = cfg.model_copy(update={"explore": cfg.explore.model_copy(update={"seed": seed})})
    pool, _ = _seed_split(cfg)
    data = Dataset.concatenate([pool, *[read(out / f"round_{i:02d}" / "labels.npz") for i in range(last)]],
                               metadata=pool.metadata)
    _, system = load_structure(cfg.explore.structure, frame=cfg.explore.frame)
    run = out / f"round_{last:02d}" / "train"
    model, params, _ = load_run(run)
    rdir = out / f"recheck_seed{seed}"
    rdir.mkdir(exist_ok=True)
    cand = _explore(cfg, last, rdir, model, params, run, _md_progress, _same_composition(data, system))
    nh = free_h(np.asarray(cand["R"], float), np.asarray(system.species), np.asarray(system.box))
    summary = cand["summary"]
    return {"seed": seed, "round": last, "frames_checked": int(len(nh)), "frames_with_free_h": int((nh > 0).sum()),
            **{k: summary[k] for k in ("stopped", "replicas", "md_time_reached_fs", "threshold", "md_seconds")}}


def round_rows(out: Path) -> list:
    """One row per finished round of the run in ``out`` (learn.json + candidates.npz)."""
    from qdyn.data import load_shipped
    from qdyn.data.io import load_npz

    state = json.loads((out / "learn.json").read_text())
    box = load_shipped("water_box32")
    Z = box.Z[0]
    rows, total = [], 0
    for rec in state["rounds"]:
        cand = load_npz(out / f"round_{rec['round']:02d}" / "candidates.npz")
        nh = free_h(np.asarray(cand["R"], float), Z, box.cell[0])
        ex = rec["explore"]
        total += rec.get("labels_added", 0)
        # the threshold the watchdog ran with (md.json: also for rounds before it was recorded)
        wd = json.loads((out / f"round_{rec['round']:02d}" / "explore" / "md.json").read_text())["watchdog"]
        # training wall time, and of its first epoch (which holds the step's compilation)
        hist = json.loads((out / f"round_{rec['round']:02d}" / "train" / "history.json").read_text())
        rows.append({"round": rec["round"], "train_frames": rec["n_train_pool"],
                     "labels_added": rec.get("labels_added", 0), "labels_total": total,
                     "labels_failed": rec.get("labels_failed", 0),
                     "test_force_mae_meV_per_A": rec["test"]["force_mae_meV_per_A"],
                     "test_energy_mae_meV": rec["test"]["energy_mae_meV"],
                     "test_mean_force_std_eV_per_A": rec["test"]["mean_force_std_eV_per_A"],
                     # held-out box frames (test_data; absent in runs started before it existed)
                     "box_test_force_mae_meV_per_A": rec.get("test_data", {}).get("force_mae_meV_per_A"),
                     "box_test_energy_mae_meV_per_molecule": (rec["test_data"]["energy_mae_meV"] / N_MOLECULES
                                                              if "test_data" in rec else None),
                     "box_test_mean_force_std_eV_per_A": rec.get("test_data", {}).get("mean_force_std_eV_per_A"),
                     "md_max_force_std_eV_per_A": ex["max_force_std_eV_per_A"],
                     "threshold_eV_per_A": wd["max_force_std_eV_per_A"],
                     "stop_force_std_eV_per_A": max((ev["force_std_eV_per_A"] for ev in ex["events"]), default=None),
                     "md_reached_fs_min": ex["md_time_reached_fs"]["min"],
                     "md_reached_fs_mean": ex["md_time_reached_fs"]["mean"], "target_fs": ex["target_fs"],
                     "stopped": ex["stopped"], "replicas": ex["replicas"], "frames_checked": int(len(nh)),
                     "free_h_max": int(nh.max()) if len(nh) else 0,
                     "frames_with_free_h": int((nh > 0).sum()), "md_seconds": ex["md_seconds"],
                     "label_seconds": rec.get("label_seconds", 0.0), "round_seconds": rec["seconds"],
                     "train_seconds": hist[-1]["wall_s"], "first_epoch_seconds": hist[0]["wall_s"]})
    return rows, bool(state.get("converged")), state.get("config_history", [])


def plot(path: Path, rows: list) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6))
    FigureCanvasAgg(fig)
    a, b, c = fig.subplots(1, 3)
    r = [x["round"] for x in rows]
    a.plot(r, [x["md_reached_fs_min"] / 1e3 for x in rows], "o-", label="every replica (min)")
    a.plot(r, [x["md_reached_fs_mean"] / 1e3 for x in rows], "s:", label="replica mean")
    a.axhline(rows[0]["target_fs"] / 1e3, color="0.5", ls="--", lw=1, label="target")
    a.set_yscale("log")  # tens of fs in the first rounds, 10 ps at the end
    a.set_xlabel("round")
    a.set_ylabel("MD time reached [ps]")
    a.legend(fontsize=8)
    before = [x["labels_total"] - x["labels_added"] for x in rows]
    b.plot(before, [x["test_force_mae_meV_per_A"] for x in rows], "o-", label="seed test split (mostly clusters)")
    b.plot(before, [x["box_test_force_mae_meV_per_A"] or np.nan for x in rows], "s-", label="held-out box frames")
    b.legend(fontsize=8)
    b.set_xlabel("GFN2-xTB labels added before the round")
    b.set_ylabel("test force MAE [meV/Å]")
    c.plot(r, [x["md_max_force_std_eV_per_A"] or np.nan for x in rows], "o-", label="largest trusted σ_F in MD")
    c.plot(r, [x["stop_force_std_eV_per_A"] or np.nan for x in rows], "v", label="σ_F that stopped the MD")
    c.plot(r, [x["test_mean_force_std_eV_per_A"] for x in rows], "s-", label="mean σ_F on test")
    c.set_yscale("log")
    for ax in (a, c):
        ax.set_xticks(r)
    c.set_xlabel("round")
    c.set_ylabel("force σ [eV/Å]")
    c.legend(fontsize=8)
    fig.suptitle("qdyn learn: 32 H2O, NVT 300 K, GFN2-xTB labels (hybrid model, Laplace σ)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def report(args, out: Path, cfg, seconds: float) -> dict:
    rows, converged, history = round_rows(out)
    e = cfg.explore
    final = final_liquid(out, rows[-1]["round"], e.stride * e.dt_fs) if converged else None
    rechecks = [recheck(out, cfg, seed) for seed in args.recheck] if converged else []
    name = "active_learning_water" + ("_smoke" if args.smoke else "")
    payload = {"rows": rows, "converged": converged, "final_liquid": final, "rechecks": rechecks, "run_dir": str(out),
               "config": cfg.model_dump(mode="json"),
               "config_history": history, "hand_run_rounds": HAND_RUN_LABELS, "free_h_criterion_A": FREE_H_A, "wall_s_this_call": seconds,
               "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
               **machine_info()}
    if args.smoke:  # checks the wiring only: nothing saved
        return payload
    save(name, payload)
    plot(RESULTS / f"{name}.png", rows)
    update_readme_section(name, "### Liquid water by `qdyn learn` (32 H2O, GFN2-xTB, NVT 300 K, hybrid + Laplace)",
                          readme_text(payload, args))
    return payload


def _fmt(x, spec=".2f") -> str:
    return "–" if x is None else format(x, spec)


def _flags(cfg: dict) -> str:
    """The script's command-line flags that give the learn config ``cfg``."""
    e, t = cfg["explore"], cfg["train"]
    threshold = (f"--max-force-std-relative {e['max_force_std_relative']}" if e.get("max_force_std_relative")
                 else f"--max-force-std {e['max_force_std']}")
    warm = f" --warm-start-epochs {cfg['warm_start_epochs']}" if cfg.get("warm_start_epochs") else ""
    return (f"--steps {e['n_steps']} --replicas {e['replicas']} --per-round {cfg['select']['n_per_round']} "
            f"{threshold} --epochs {t['epochs']}{warm}")


def box_test_text(p: dict) -> str:
    """What the box test set is (its file's description), or that the run had none."""
    path = p["config"].get("test_data")
    if not path or not Path(path).exists():
        return "no box test set"
    from qdyn.data import read

    ds = read(path)
    return f"{ds.n_frames} {ds.metadata.get('description', path)}"


def _hand_trained_liquid():
    path = RESULTS / "liquid_water.json"
    return json.loads(path.read_text()) if path.exists() else None


def readme_text(p: dict, args) -> str:
    # (first round, config) of each stretch of the run: a resume may have changed the schedule
    hist = p["config_history"]
    later = [h["previous"] for h in hist[1:]] + [p["config"]]
    runs = [(0, hist[0]["previous"])] + [(h["from_round"], c) for h, c in zip(hist, later)] if hist else \
        [(0, p["config"])]
    commands = "; ".join((f"resumed in round {r} (its finished steps kept) with" if r or i else "from round 0:")
                         + f" `{_flags(c)}`" + ("" if c.get("test_data") else " (no box test set)")
                         for i, (r, c) in enumerate(runs))
    head = (f"Measured {p['date']} on {p['machine']['cpu']} ({p['machine']['cores']} cores, shared; load average "
            f"{p['load_average']}), jax {p['versions']['jax']}, `python benchmarks/active_learning_water.py ...` "
            f"(niced) with {commands} (a resume may change the schedule of later rounds). Run directory "
            f"`{p['run_dir']}` (resumable).\n\n"
            f"Test errors: the loop's fixed split of the seed ({p['config']['n_test']} frames, mostly clusters) and "
            f"{box_test_text(p)}.\n\n"
            "| round | train frames | labels added | test force MAE [meV/Å] | box test force MAE [meV/Å] | box test "
            "energy MAE [meV/H2O] | test mean σ_F [eV/Å] | watchdog threshold "
            "[eV/Å] | largest trusted σ_F in MD [eV/Å] | σ_F that stopped it [eV/Å] | MD reached [ps] (min, mean of "
            "replicas) | replicas stopped | "
            "free H (max; frames with any / stored) | minutes: training (1st epoch), MD, labels; round |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {x['round']} | {x['train_frames']} | {x['labels_added']} | {x['test_force_mae_meV_per_A']:.0f} | "
             f"{_fmt(x['box_test_force_mae_meV_per_A'], '.0f')} | "
             f"{_fmt(x['box_test_energy_mae_meV_per_molecule'], '.1f')} | "
             f"{x['test_mean_force_std_eV_per_A']:.3f} | {_fmt(x['threshold_eV_per_A'])} | "
             f"{_fmt(x['md_max_force_std_eV_per_A'])} | {_fmt(x['stop_force_std_eV_per_A'])} | "
             f"{x['md_reached_fs_min'] / 1e3:.2f}, {x['md_reached_fs_mean'] / 1e3:.2f} / {x['target_fs'] / 1e3:.0f} | "
             f"{x['stopped']}/{x['replicas']} | "
             f"{x['free_h_max']}; {x['frames_with_free_h']}/{x['frames_checked']} | "
             f"{x['train_seconds'] / 60:.1f} ({x['first_epoch_seconds'] / 60:.1f}), {x['md_seconds'] / 60:.1f}, "
             f"{x['label_seconds'] / 60:.1f}; {x['round_seconds'] / 60:.1f} |" for x in p["rows"]]
    total = p["rows"][-1]["labels_total"] if p["rows"] else 0
    last = p["rows"][-1] if p["rows"] else None
    status = (f"**converged** in round {last['round']}: its MD ran the target time in all {last['replicas']} replicas "
              f"with none stopped, and {last['frames_with_free_h']} of its {last['frames_checked']} stored frames "
              f"(every {p['config']['explore']['stride'] * p['config']['explore']['dt_fs']:g} fs) has a free H"
              if p["converged"] else "**not converged yet** (see docs/active_learning.md for how far it got)")
    if p.get("final_liquid"):
        f, hand = p["final_liquid"], _hand_trained_liquid()
        status += (f" (largest H–nearest-O distance in any frame {f['max_nearest_OH_A']:.2f} Å; O–O g(r) after "
                   f"{EQUILIBRATION_PS:g} ps: first peak at {f['first_OO_peak_A']:.2f} Å, height "
                   f"{f['first_OO_peak_g']:.2f}; mean T {f['temperature_mean_K']:.0f} K"
                   + (f"; the hand-trained liquid of `liquid_water.py`: {hand['max_nearest_OH_A']:.2f} Å, "
                      f"{hand['first_OO_peak_A']:.2f} Å, {hand['first_OO_peak_g']:.2f}, "
                      f"{hand['temperature_mean_K']:.0f} K"
                      if hand else "") + ")")
    for c in p.get("rechecks", []):
        status += (f". Again with explore seed {c['seed']} (`--recheck {c['seed']}`: new velocities and noise, same "
                   f"model and threshold): {c['replicas'] - c['stopped']} of {c['replicas']} replicas ran the target "
                   f"time (the shortest {c['md_time_reached_fs']['min'] / 1e3:.2f} ps), free H in "
                   f"{c['frames_with_free_h']} of {c['frames_checked']} frames")
    tail = (f"\n\n{status}; GFN2-xTB labels added by the loop: {total} (the hand-run rounds of "
            f"`liquid_water.py` labelled {HAND_RUN_LABELS['labelled']} frames in {HAND_RUN_LABELS['rounds']} rounds "
            "and trained on 117 of them).\n\n![active learning water](results/active_learning_water.png)")
    return head + "\n".join(lines) + tail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/qdyn-al-water"), help="run directory (resumed if present)")
    ap.add_argument("--smoke", action="store_true", help="tiny BPNN, few steps: checks the periodic wiring")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the table, plot and README section")
    ap.add_argument("--steps", type=int, default=20000, help="MD steps a round must survive (× 0.5 fs)")
    ap.add_argument("--replicas", type=int, default=1, help="MD replicas per round")
    ap.add_argument("--stride", type=int, default=20, help="steps between σ-checked frames")
    ap.add_argument("--frames-per-block", type=int, default=25, help="frames per compiled MD block")
    ap.add_argument("--max-force-std", type=float, default=1.0, help="watchdog threshold, eV/Å per atom")
    ap.add_argument("--max-force-std-relative", type=float, default=None,
                    help="watchdog threshold as a factor on the training frames' σ_F (90th percentile of each "
                         "frame's largest atom σ_F); replaces --max-force-std")
    ap.add_argument("--per-round", type=int, default=16, help="frames labelled per round")
    ap.add_argument("--max-rounds", type=int, default=8, help="rounds at most")
    ap.add_argument("--n-test", type=int, default=20, help="seed frames held out as the test set")
    ap.add_argument("--epochs", type=int, default=20, help="training epochs per round")
    ap.add_argument("--warm-start-epochs", type=int, default=None,
                    help="epochs of rounds >= 1 (warm-started, end-to-end); default: --epochs, staged")
    ap.add_argument("--pretrain-epochs", type=int, default=8, help="classical pretraining epochs (staged)")
    ap.add_argument("--cluster-stride", type=int, default=3, help="every n-th cluster frame (n <= 10) in the seed")
    ap.add_argument("--workers", type=int, default=1, help="labelling processes")
    ap.add_argument("--recheck", type=int, nargs="*", default=[],
                    help="once converged: run the last round's MD again with these explore seeds (stored in the run)")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.stride, args.frames_per_block, args.replicas = 40, 10, 2, 2
        args.per_round, args.max_rounds, args.n_test = 2, 2, 4
        args.max_force_std = min(args.max_force_std, 0.05)  # an untrained model: every replica stops
    from qdyn.learn import run_learning

    seed_path = args.out.parent / (args.out.name + "_seed.npz")
    write_seed_data(seed_path, args.cluster_stride, args.smoke)
    box_test_path = args.out.parent / (args.out.name + "_box_test.npz")
    if not args.smoke:
        write_box_test(box_test_path)
    cfg = learn_config(args, seed_path, box_test_path)
    t0 = time.perf_counter()
    if not args.report_only:
        run_learning(cfg, args.out, resume=(args.out / "learn.json").exists(), progress=True,
                     on_round=lambda rec: print(json.dumps({k: rec[k] for k in ("round", "n_train_pool", "test")}),
                                                flush=True))
    p = report(args, args.out, cfg, time.perf_counter() - t0)
    print(json.dumps(p["rows"], indent=1), flush=True)


if __name__ == "__main__":
    main()
