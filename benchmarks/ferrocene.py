"""Ferrocene at GFN2-xTB with the hybrid model, refined by ``qdyn learn`` (issue 21, item 2).

The first ferrocene hybrid (``bench_organics.py --xtb-only``: 20 epochs on 100 of the shipped
frames, no refinement) broke 10 bonds within 1 ps of NVT. This script applies the recipe that
made the alanine dipeptide hold its bonds (``ramachandran.py``): the organics hybrid
(per-atom re-uploading circuit ∥ MLP) with a core wall (``core_radii: auto``), hidden [32, 32],
forces weighted ×10, all 300 shipped GFN2-xTB frames (``shipped:ferrocene``; a fixed held-out
test split), and refinement on the model's own MD. The refinement is qdyn's own active-learning
loop (``qdyn.learn.run_learning``): per round the model (with a last-layer Laplace σ) runs
Langevin MD at ``--explore-T`` (hotter than the 300 K production run) from the GFN2-xTB minimum
under the uncertainty watchdog; the most uncertain frames, spread out in descriptor space, are
labelled with GFN2-xTB (tblite, the shipped set's settings) and the model is retrained from
its parameters, until no replica stops.

Then, with the final model:

* **NVT** at 300 K, ``--replicas`` × ``--ps`` (Langevin, dt 0.5 fs; ``bench_organics``'s bond
  test: no bond past 1.5 × its starting length);
* **Fe–ring-centroid distance** over the NVT frames against GFN2-xTB's own Langevin MD at 300 K
  (``qdyn.data.water.cluster_md_frames``, the sampler the shipped set came from) and its minimum;
* **ring rotor**: one Cp ring turned rigidly about the Fe–centroid axis from eclipsed (0°) to
  staggered (36°), 7 points, model vs GFN2-xTB energies relative to eclipsed.

Usage: OMP_NUM_THREADS=1 nice -n 15 python benchmarks/ferrocene.py --out runs/fc [--small]
(the run directory is resumable: the same command again continues the loop where it stopped).
Writes benchmarks/results/ferrocene.{json,png} and its section of benchmarks/README.md.
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

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from bench_organics import DESCRIPTOR, MODELS, bond_pairs, bond_report, errors, nvt_run  # noqa: E402
from qdyn.data import Dataset, load_shipped, write  # noqa: E402
from qdyn.data.labelers import labeler_from_spec  # noqa: E402
from qdyn.data.samplers import fragments, torsion_scan  # noqa: E402
from qdyn.plotting import pyplot, save_figure  # noqa: E402
from qdyn.system import System  # noqa: E402

NAME = "ferrocene"
DATA = "shipped:ferrocene"
FE = 26
EQUILIBRATION_PS = 1.0  # of each NVT replica, left out of the distance distribution
ROTOR_ANGLES_DEG = np.linspace(0.0, 36.0, 7)  # eclipsed (0°) to staggered (36°)


# -- the model: qdyn learn ------------------------------------------------------------------
def reference(ds: Dataset):
    """(Z [21], R [21, 3] Å) of the GFN2-xTB minimum the shipped set was sampled around (eclipsed)."""
    ref = ds.metadata["sampling"]["reference"][0]
    return np.asarray(ref["Z"]), np.asarray(ref["R_minimum"])


def learn_config(args, start: Path):
    """The :class:`~qdyn.learn.LearnConfig` of the run: the organics hybrid with the dipeptide's
    settings, a Laplace σ for the watchdog and the selection, GFN2-xTB labels."""
    from qdyn.learn import LearnConfig

    raw = {
        "train": {"model": {**DESCRIPTOR, **MODELS["hybrid (circuit)"], "core_radii": "auto", "hidden": args.hidden},
                  "data": {"path": DATA},
                  # forces carry 3N numbers per frame against one energy: weighted up so MD sees the right gradients
                  "loss": {"energy_weight": 1.0, "force_weight": 10.0},
                  "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.02},
                  "epochs": args.epochs, "batch_size": 16, "seed": 0, "staged": True,
                  "pretrain_epochs": max(1, args.epochs // 5), "checkpoint_every": max(1, args.epochs // 4),
                  "uncertainty": {"method": "laplace"}},
        # the shipped set's labeller settings (tblite GFN2-xTB, 250 SCF iterations): one reference
        "labeler": {"method": "GFN2-xTB", "max_cycle": 250, "workers": 0},
        "explore": {"structure": str(start), "ensemble": "nvt", "temperature_K": args.explore_T, "dt_fs": 0.5,
                    "n_steps": args.explore_steps, "stride": args.stride, "replicas": args.explore_replicas,
                    "friction_per_fs": 0.01, "remove_rotation": True,
                    "max_force_std_relative": args.max_force_std_relative},
        "select": {"method": "uncertainty", "n_per_round": args.per_round},
        "warm_start_epochs": args.warm_start_epochs, "max_rounds": args.max_rounds, "n_test": args.n_test,
    }
    return LearnConfig.model_validate(raw)


def run_loop(args, log) -> tuple:
    """The loop's run in ``args.out`` (resumed when one is there): (cfg, learn.json state)."""
    from qdyn.learn import run_learning

    out = args.out
    start = out / "start.extxyz"
    if not start.exists():
        Z, R0 = reference(load_shipped(NAME))
        out.mkdir(parents=True, exist_ok=True)
        write(Dataset(R=R0[None], Z=Z[None]), start)
    cfg = learn_config(args, start)
    resume = (out / "learn.json").exists()
    t0 = time.perf_counter()

    def on_round(rec):
        ex = rec["explore"]
        log(f"round {rec['round']}: {rec['n_train_pool']} frames, test F MAE "
            f"{rec['test']['force_mae_meV_per_A']:.0f} meV/Å, MD {ex['stopped']}/{ex['replicas']} stopped "
            f"(reached {ex['md_time_reached_fs']['min'] / 1e3:.2f} ps min), {rec['labels_added']} labels added, "
            f"{rec['seconds'] / 60:.1f} min")

    run_learning(cfg, out, resume=resume, progress=False, on_round=on_round)
    log(f"loop done in {(time.perf_counter() - t0) / 60:.1f} min")
    return cfg, json.loads((out / "learn.json").read_text())


def round_rows(out: Path, state: dict) -> list:
    """One row per finished round: training pool, labels, test errors, MD reached, timings."""
    rows = []
    for rec in state["rounds"]:
        ex = rec["explore"]
        hist = json.loads((out / f"round_{rec['round']:02d}" / "train" / "history.json").read_text())
        rows.append({"round": rec["round"], "train_pool": rec["n_train_pool"], "labels_added": rec["labels_added"],
                     "test_force_mae_meV_per_A": rec["test"]["force_mae_meV_per_A"],
                     "test_energy_mae_meV": rec["test"]["energy_mae_meV"],
                     "threshold_eV_per_A": ex["threshold"]["max_force_std_eV_per_A"],
                     "stopped": ex["stopped"], "replicas": ex["replicas"],
                     "md_reached_ps_min": ex["md_time_reached_fs"]["min"] / 1e3, "target_ps": ex["target_fs"] / 1e3,
                     "train_s": hist[-1]["wall_s"], "md_s": ex["md_seconds"], "label_s": rec.get("label_seconds", 0.0),
                     "round_s": rec["seconds"]})
    return rows


def round_model(out: Path, r: int):
    """(model, params) trained in round ``r`` of the loop in ``out``."""
    from qdyn.train import load_run

    model, params, _ = load_run(out / f"round_{r:02d}" / "train")
    return model, params


# -- ferrocene geometry --------------------------------------------------------------------
def rings(Z, R0) -> list:
    """[(carbons [5], hydrogens [5]) per Cp ring]: the carbons' covalent fragments
    (:func:`qdyn.data.samplers.fragments`), each with the H bonded to its carbons."""
    carbons = np.flatnonzero(Z == 6)
    ch_bonds = [(int(i), int(j)) for i, j in bond_pairs(Z, R0) if {int(Z[i]), int(Z[j])} == {1, 6}]
    out = []
    for part in fragments(Z[carbons], R0[carbons]):
        ring = set(carbons[part].tolist())
        out.append((sorted(ring), sorted(h for i, j in ch_bonds for c, h in ((i, j), (j, i)) if c in ring)))
    if len(out) != 2 or any(len(c) != 5 or len(h) != 5 for c, h in out):
        raise ValueError(f"expected two C5H5 rings, found {[(len(c), len(h)) for c, h in out]}")
    return out


def fe_centroid(Z, X, ring_atoms) -> np.ndarray:
    """Fe–ring-centroid distances [..., 2] Å of frames X [..., n, 3] (one per ring)."""
    fe = X[..., int(np.flatnonzero(Z == FE)[0]), :]
    return np.stack([np.linalg.norm(X[..., c, :].mean(-2) - fe, axis=-1) for c, _ in ring_atoms], -1)


def ring_twist(Z, X, ring_atoms) -> np.ndarray:
    """Relative rotation of the two rings [...] degrees in [0, 36] of frames X [..., n, 3]: 0
    eclipsed, 36 staggered. Each ring's phase is the angle of its carbons about the
    centroid–centroid axis, averaged with period 72° (five-fold); the twist is their
    difference folded into [0, 36]."""
    (c1, _), (c2, _) = ring_atoms
    g1, g2 = X[..., c1, :].mean(-2), X[..., c2, :].mean(-2)
    axis = (g2 - g1) / np.linalg.norm(g2 - g1, axis=-1, keepdims=True)
    # a reference direction perpendicular to the axis: the first carbon of ring 1, projected
    ref = X[..., c1[0], :] - g1
    ref -= (ref * axis).sum(-1, keepdims=True) * axis
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    ortho = np.cross(axis, ref)

    def phase(carbons, centre):
        v = X[..., carbons, :] - centre[..., None, :]
        ang = np.arctan2((v * ortho[..., None, :]).sum(-1), (v * ref[..., None, :]).sum(-1))
        return np.angle(np.exp(5j * ang).mean(-1)) / 5  # five-fold circular mean, radians

    t = np.degrees(phase(c1, g1) - phase(c2, g2)) % 72.0
    return np.minimum(t, 72.0 - t)


def rotate_ring(R0, Z, ring, angles_deg) -> np.ndarray:
    """[len(angles_deg), n, 3] Å: R0 with one ring's C and H turned rigidly about the
    Fe–centroid axis (:func:`qdyn.data.samplers.torsion_scan` about Fe → the centroid, which
    is appended as a point for the scan and dropped after)."""
    carbons, hydrogens = ring
    with_centroid = np.vstack([R0, R0[carbons].mean(0)])
    fe = int(np.flatnonzero(Z == FE)[0])
    scan = torsion_scan(with_centroid, axis=(fe, len(R0)), move=carbons + hydrogens, angles_deg=angles_deg)
    return scan[:, :-1]


def ring_rotor(model, params, Z, R0, ring_atoms, labeler) -> dict:
    """Rigid rotation of the first ring, eclipsed → staggered: GFN2-xTB and model energies [meV]
    relative to eclipsed."""
    frames = rotate_ring(R0, Z, ring_atoms[0], ROTOR_ANGLES_DEG)
    system = System.create([int(z) for z in Z])
    e_ref = np.array([labeler.label(Z, R).energy for R in frames])
    e_model = np.array([float(model.apply(params, jnp.asarray(R), system)) for R in frames])
    ref, mod = (e_ref - e_ref[0]) * 1e3, (e_model - e_model[0]) * 1e3
    return {"angle_deg": ROTOR_ANGLES_DEG.tolist(), "xtb_meV": ref.tolist(), "model_meV": mod.tolist(),
            "staggered_xtb_meV": float(ref[-1]), "staggered_model_meV": float(mod[-1]),
            "mae_meV": float(np.mean(np.abs(mod - ref)))}


def xtb_md(Z, R0, labeler, *, n_frames: int, path: Path) -> np.ndarray:
    """Frames [n_frames, n, 3] Å of GFN2-xTB Langevin MD at 300 K (10 fs apart after 200 fs; the
    shipped set's MD sampler, another seed), stored in ``path`` and read back when there."""
    from qdyn.data.water import cluster_md_frames

    if path.exists():
        return np.load(path)["R"]
    X = cluster_md_frames(labeler, Z, R0, n_frames=n_frames, temperature=300.0, dt=0.5, friction=0.01,
                          equilibration_steps=400, interval=20, seed=11)
    np.savez(path, R=X)
    return X


def nvt(model, params, Z, R0, *, ps: float, replicas: int, path: Path):
    """(bond report, frames X [F, replicas, n, 3] Å, times [F] ps) of the production NVT
    (``bench_organics.nvt_run``, seed 1), stored in ``path`` and read back when there."""
    if path.exists():
        z = np.load(path)
        return json.loads(str(z["report"])), z["X"], z["t_ps"]
    res, wall = nvt_run(model, params, Z, R0, ps=ps, seed=1, replicas=replicas)
    report = bond_report(Z, R0, res, wall)
    X, t_ps = np.asarray(res.position), np.asarray(res.time_fs) / 1000
    np.savez(path, X=X, t_ps=t_ps, report=json.dumps(report))
    return report, X, t_ps


def twist_summary(t: np.ndarray) -> dict:
    """Ring twists [°] in [0, 36]: mean and the shares near eclipsed (< 12°) and staggered (> 24°)."""
    return {"mean_deg": float(t.mean()), "eclipsed_share": float((t < 12).mean()),
            "staggered_share": float((t > 24).mean()), "n": int(t.size)}


def distribution(d: np.ndarray) -> dict:
    return {"mean_A": float(d.mean()), "std_A": float(d.std()), "p01_A": float(np.quantile(d, 0.01)),
            "p99_A": float(np.quantile(d, 0.99)), "n": int(d.size)}


# -- plot and README ------------------------------------------------------------------------
def plot(path: Path, centroid, twist, rotor: dict, stretch_t, stretch) -> None:
    """Fe–centroid and ring-twist distributions (hybrid vs GFN2-xTB MD), the rigid rotor scan,
    and the largest bond stretch of each NVT replica over time."""
    (d_model, d_xtb, d_min), (tw_model, tw_xtb) = centroid, twist
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    bins = np.linspace(min(d_model.min(), d_xtb.min()) - 0.02, max(d_model.max(), d_xtb.max()) + 0.02, 40)
    for ax, (model, xtb, b, xlabel) in zip(axes[:2], ((d_model, d_xtb, bins, "Fe–ring centroid [Å]"),
                                                      (tw_model, tw_xtb, np.linspace(0, 36, 13),
                                                       "ring twist [°] (0 eclipsed, 36 staggered)"))):
        ax.hist(xtb.ravel(), bins=b, density=True, alpha=0.5, label="GFN2-xTB MD")
        ax.hist(model.ravel(), bins=b, density=True, histtype="step", lw=2, label="hybrid MD")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.set_title("300 K NVT")
    axes[0].axvline(d_min, color="k", ls="--", lw=1, label="GFN2-xTB minimum")
    axes[0].legend(fontsize=8)
    axes[2].plot(rotor["angle_deg"], rotor["xtb_meV"], "k-o", label="GFN2-xTB")
    axes[2].plot(rotor["angle_deg"], rotor["model_meV"], "--s", label="hybrid")
    axes[2].set_xlabel("ring rotation [°] (0 eclipsed, 36 staggered)")
    axes[2].set_ylabel("E − E(eclipsed) [meV]")
    axes[2].set_title("rigid Cp rotation")
    axes[2].legend(fontsize=8)
    for k in range(stretch.shape[1]):
        axes[3].plot(stretch_t, stretch[:, k], lw=0.8, label=f"replica {k}")
    axes[3].axhline(1.5, color="r", ls="--", lw=1, label="broken")
    axes[3].set_xlabel("t [ps]")
    axes[3].set_ylabel("largest bond length / start")
    axes[3].set_title("bonds in NVT")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def readme_text(p: dict) -> str:
    m, s, n = p["model"], p["settings"], p["nvt"]
    lines = [
        f"Ferrocene (21 atoms), hybrid model (per-atom re-uploading circuit ∥ MLP, hidden {s['hidden']}, core wall "
        f"`auto`, force weight 10, Laplace σ) on the shipped GFN2-xTB set (`{DATA}`, {m['n_seed']} frames; "
        f"{m['n_test']} held out as the fixed test set), {s['epochs']} epochs, then refined by `qdyn learn`: "
        f"per round {s['explore_replicas']} replicas × {s['explore_steps'] * 0.5 / 1000:g} ps of Langevin MD at "
        f"{s['explore_T']:.0f} K from the GFN2-xTB minimum under the watchdog (threshold "
        f"{s['max_force_std_relative']} × the 90th percentile of the training frames' largest σ_F), up to "
        f"{s['per_round']} most uncertain frames labelled with GFN2-xTB, {s['warm_start_epochs']} warm-started "
        f"epochs; until no replica stops.", "",
        "| round | pool (train + val) | labels added | test E MAE [meV/molecule] | test F MAE [meV/Å] | watchdog [eV/Å] "
        "| replicas stopped | MD reached [ps] (min) | minutes: train, MD, round |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in p["rounds"]:
        lines.append(f"| {r['round']} | {r['train_pool']} | {r['labels_added']} | {r['test_energy_mae_meV']:.0f} | "
                     f"{r['test_force_mae_meV_per_A']:.0f} | {r['threshold_eV_per_A']:.2f} | {r['stopped']}/"
                     f"{r['replicas']} | {r['md_reached_ps_min']:.2f} / {r['target_ps']:g} | "
                     f"{r['train_s'] / 60:.1f}, {r['md_s'] / 60:.1f}, {r['round_s'] / 60:.1f} |")
    verdict = "converged" if p["converged"] else "**not converged** (round limit)"
    t, t0 = m["test"], m["round_0_test"]
    firsts = [x for x in n["first_break_ps"] if x is not None]
    d, x, rot, tw, twx = p["fe_centroid"], p["fe_centroid_xtb"], p["rotor"], p["twist"], p["twist_xtb"]
    lines += [
        "", f"Loop {verdict}; {p['labels_total']} GFN2-xTB labels added in all. Final model on the {m['n_test']} "
        f"test frames: {t['energy_mae_meV_per_atom']:.2f} meV/atom, {t['force_mae_meV_per_A']:.0f} meV/Å "
        f"(round 0: {t0['energy_mae_meV_per_atom']:.2f} meV/atom, {t0['force_mae_meV_per_A']:.0f} meV/Å; the first "
        f"hybrid of `bench_organics.py`: 11.83 meV/atom, 716 meV/Å).", "",
        "| NVT 300 K (Langevin, dt 0.5 fs) | replicas × ps | max bond stretch | bonds broken | replicas broken "
        "(first at) | bonds formed | mean T [K] | steps/s | wall [min] |", "|---|---|---|---|---|---|---|---|---|",
        f"| final hybrid | {n['replicas']} × {n['ps']:g} | {n['max_bond_stretch']:.2f} | {n['bonds_broken']} | "
        f"{n['replicas_with_broken_bond']}" + (f" ({min(firsts):.2f} ps)" if firsts else "") + f" | "
        f"{n['extra_bonds_formed']} | {n['mean_temperature_K']:.0f} | {n['steps_per_s']:.0f} | "
        f"{n['wall_s'] / 60:.1f} |", "",
        f"Fe–ring-centroid distance at 300 K: hybrid NVT {d['mean_A']:.3f} ± {d['std_A']:.3f} Å (1–99 %: "
        f"{d['p01_A']:.3f}–{d['p99_A']:.3f}; {d['n']} distances after {p['equilibration_ps']:g} ps), GFN2-xTB Langevin MD "
        f"{x['mean_A']:.3f} ± {x['std_A']:.3f} Å ({x['p01_A']:.3f}–{x['p99_A']:.3f}; {p['xtb_md_frames']} frames, "
        f"{p['xtb_md_frames'] * 10 / 1000:g} ps, 300 K), GFN2-xTB minimum {p['fe_centroid_minimum_A']:.3f} Å.", "",
        f"Ring twist (0° eclipsed, 36° staggered) at 300 K: hybrid NVT mean {tw['mean_deg']:.1f}°, "
        f"{tw['eclipsed_share']:.0%} of frames within 12° of eclipsed, {tw['staggered_share']:.0%} within 12° of "
        f"staggered; GFN2-xTB MD {twx['mean_deg']:.1f}°, {twx['eclipsed_share']:.0%}, {twx['staggered_share']:.0%} "
        "(a free rotor gives 18°, 33%, 33%).", "",
        "Ring rotor (one Cp ring turned rigidly about the Fe–centroid axis, other atoms fixed at the eclipsed "
        "GFN2-xTB minimum), E − E(eclipsed) [meV]:", "",
        "| angle [°] | " + " | ".join(f"{a:.0f}" for a in rot["angle_deg"]) + " |",
        "|---|" + "---|" * len(rot["angle_deg"]),
        "| GFN2-xTB | " + " | ".join(f"{e:.1f}" for e in rot["xtb_meV"]) + " |",
        "| hybrid | " + " | ".join(f"{e:.1f}" for e in rot["model_meV"]) + " |", "",
        f"Staggered − eclipsed: GFN2-xTB {rot['staggered_xtb_meV']:.1f} meV, hybrid {rot['staggered_model_meV']:.1f} "
        f"meV (profile MAE {rot['mae_meV']:.1f} meV; for scale, the test energy MAE is "
        f"{t['energy_mae_meV']:.0f} meV per molecule). {p['machine']['cores']} cores, load average "
        f"{p['load_average']} at the start; the loop took {p['loop_seconds'] / 60:.0f} min (its rounds' sum), the "
        f"NVT {n['wall_s'] / 60:.0f} min.", "",
        f"![ferrocene](results/{NAME}.png)"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run directory of the loop (resumed when it holds one)")
    ap.add_argument("--epochs", type=int, default=300, help="epochs of round 0 (staged: a fifth classical only)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="widths of the descriptor MLP")
    ap.add_argument("--n-test", type=int, default=40, help="shipped frames held out as the fixed test set")
    ap.add_argument("--explore-T", type=float, default=400.0, help="temperature of the loop's MD [K]")
    ap.add_argument("--explore-steps", type=int, default=20000, help="steps per replica of the loop's MD")
    ap.add_argument("--explore-replicas", type=int, default=4)
    ap.add_argument("--stride", type=int, default=50, help="steps between the loop's candidate frames")
    ap.add_argument("--max-force-std-relative", type=float, default=2.0, help="watchdog threshold (relative)")
    ap.add_argument("--per-round", type=int, default=32, help="frames labelled per round")
    ap.add_argument("--warm-start-epochs", type=int, default=60)
    ap.add_argument("--max-rounds", type=int, default=6)
    ap.add_argument("--replicas", type=int, default=2, help="NVT replicas of the final model")
    ap.add_argument("--ps", type=float, default=100.0, help="NVT length per replica [ps]")
    ap.add_argument("--xtb-md-frames", type=int, default=300, help="frames of the GFN2-xTB reference MD (10 fs apart)")
    ap.add_argument("--small", action="store_true", help="a tiny run, for checking the script")
    args = ap.parse_args()
    if args.small:
        args.epochs, args.explore_steps, args.explore_replicas, args.stride = 3, 400, 2, 20
        args.per_round, args.warm_start_epochs, args.max_rounds, args.ps, args.xtb_md_frames = 4, 1, 2, 1.0, 20
    load_avg = round(os.getloadavg()[0], 2)
    log = lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True)  # noqa: E731
    t_start = time.perf_counter()
    cfg, state = run_loop(args, log)
    from qdyn.learn.loop import _seed_split

    _, test = _seed_split(cfg)
    last = len(state["rounds"]) - 1
    model, params = round_model(args.out, last)
    m0, p0 = round_model(args.out, 0)
    model_info = {"n_seed": load_shipped(NAME).n_frames, "n_test": test.n_frames, "test": errors(model, params, test),
                  "round_0_test": errors(m0, p0, test), "final_round": last}
    log(f"final model: {model_info['test']}; round 0: {model_info['round_0_test']}")

    ds = load_shipped(NAME)
    Z, R0 = reference(ds)
    ring_atoms = rings(Z, R0)
    labeler = labeler_from_spec(ds.metadata["labeler"])
    rotor = ring_rotor(model, params, Z, R0, ring_atoms, labeler)
    log(f"ring rotor, staggered − eclipsed: xTB {rotor['staggered_xtb_meV']:.1f} meV, model "
        f"{rotor['staggered_model_meV']:.1f} meV")
    X_xtb = xtb_md(Z, R0, labeler, n_frames=args.xtb_md_frames, path=args.out / "xtb_md_300K.npz")
    log(f"GFN2-xTB MD: {len(X_xtb)} frames")

    nvt_report, X, t_ps = nvt(model, params, Z, R0, ps=args.ps, replicas=args.replicas,
                              path=args.out / f"nvt_round{last:02d}_{args.replicas}x{args.ps:g}ps.npz")
    log(f"NVT: {nvt_report}")
    equilibration_ps = min(EQUILIBRATION_PS, t_ps[-1] / 2)
    d_model = fe_centroid(Z, X[t_ps >= equilibration_ps], ring_atoms)
    d_xtb = fe_centroid(Z, X_xtb, ring_atoms)
    tw_model = ring_twist(Z, X[t_ps >= equilibration_ps], ring_atoms)
    tw_xtb = ring_twist(Z, X_xtb, ring_atoms)
    d_min = float(fe_centroid(Z, R0, ring_atoms).mean())
    pairs = bond_pairs(Z, R0)
    L0 = np.linalg.norm(R0[pairs[:, 0]] - R0[pairs[:, 1]], axis=-1)
    stretch = (np.linalg.norm(X[..., pairs[:, 0], :] - X[..., pairs[:, 1], :], axis=-1) / L0).max(-1)  # [F, replicas]

    payload = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "model": model_info, "rounds": round_rows(args.out, state), "converged": bool(state.get("converged")),
               "labels_total": sum(r.get("labels_added", 0) for r in state["rounds"]), "nvt": nvt_report,
               "fe_centroid": distribution(d_model), "fe_centroid_xtb": distribution(d_xtb),
               "fe_centroid_minimum_A": d_min,
               "twist": twist_summary(tw_model), "twist_xtb": twist_summary(tw_xtb), "equilibration_ps": float(equilibration_ps), "xtb_md_frames": int(len(X_xtb)), "rotor": rotor,
               "rings": [[c, h] for c, h in ring_atoms], "load_average": load_avg,
               "loop_seconds": sum(r["seconds"] for r in state["rounds"]),
               "seconds_this_call": time.perf_counter() - t_start, **machine_info()}
    name = NAME + ("_small" if args.small else "")
    save(name, payload)
    plot(RESULTS / f"{name}.png", (d_model, d_xtb, d_min), (tw_model, tw_xtb), rotor, t_ps, stretch)
    text = readme_text(payload)
    print(text)
    if not args.small:
        update_readme_section(NAME, "### Ferrocene by `qdyn learn` (`python benchmarks/ferrocene.py`)", text)


if __name__ == "__main__":
    main()
