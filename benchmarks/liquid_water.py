"""Liquid water with the hybrid model: NVT Langevin MD of 32 H2O in a periodic box at 300 K.

1. Train the hybrid model (power-spectrum descriptor, per-atom re-uploading circuit ∥ MLP,
   staged) on the shipped periodic GFN2-xTB box frames (``water_box32``) together with the
   GFN2-xTB cluster frames n = 2–10 (``water_clusters``, each placed in a 25 Å cell, far
   larger than the cluster plus the cutoff, so no image is seen): the box teaches the
   liquid's environments, the clusters the xTB intramolecular vibrations at 300 K.
2. Run NVT Langevin MD (dt 0.5 fs, 300 K, friction 0.01/fs) from a shipped box frame, with
   a JAX-MD neighbour list (``qdyn.descriptors.neighbors.neighbor_list_fn``; the power
   spectrum takes it, so the model sees pairs within the cutoff only).
3. O–O and O–H radial distribution functions (``qdyn.md.analysis.radial_distribution``) over
   the production part, the first O–O peak, the density of the fixed box and the mean
   temperature; blow-up checks are run_md's (non-finite state or T > 2000 K stops the run).

Usage:
    nice -n 10 python benchmarks/liquid_water.py --phase augment --md-out DIR   (optional, see phase_augment)
    nice -n 10 python benchmarks/liquid_water.py --phase train [--epochs 40]
    nice -n 10 python benchmarks/liquid_water.py --phase md [--steps 20000] > liquid.log
Writes benchmarks/results/liquid_water.{json,png}; the trained run goes to --run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save  # noqa: E402
from qdyn import units  # noqa: E402
from qdyn.data import Dataset, load_shipped  # noqa: E402
from qdyn.data.water import box_length  # noqa: E402

MODEL = {"family": "hybrid", "n_qubits": 4, "layers": 2, "hidden": [16, 16], "cutoff": 4.5, "n_radial": 6,
         "descriptor": "power_spectrum", "l_max": 2, "radial_basis": "bessel", "branch": "reupload",
         # a fixed pair wall at 0.9 × the shortest O–O, O–H, H–H distance in the training frames
         # (qdyn.models.core_repulsion): without it the first model collapsed into holes below
         # the data (O–O at 1.5 Å, H2 at 0.74 Å) within 10 ps
         "core_radii": "auto"}
CLUSTER_CELL = 25.0  # Å


def training_data(*, cluster_stride: int) -> Dataset:
    """Box frames + cluster frames n ≤ 10 (every ``cluster_stride``-th) in a large cell."""
    box = load_shipped("water_box32")
    cl = load_shipped("water_clusters")
    nm = cl.extras["n_molecules"]
    idx = np.flatnonzero(nm <= 10)[::cluster_stride]
    sub = cl.subset(idx)
    n = sub.n_frames
    cl_cell = Dataset(R=sub.R, Z=sub.Z, E=sub.E, F=sub.F, cell=np.broadcast_to(CLUSTER_CELL * np.eye(3), (n, 3, 3)),
                      pbc=np.ones((n, 3), bool), extras={"n_molecules": sub.extras["n_molecules"]},
                      metadata=sub.metadata)
    bx = Dataset(R=box.R, Z=box.Z, E=box.E, F=box.F, cell=box.cell, pbc=box.pbc,
                 extras={"n_molecules": box.extras["n_molecules"]}, metadata=box.metadata)
    # Box frames first (the trainer splits at random by split_seed, so order does not matter).
    return Dataset.concatenate([bx, cl_cell], metadata={"name": "water_box32 + water_clusters(n<=10)",
                                                         "levels": "GFN2-xTB (tblite) for all frames"})


AUGMENT = Path(__file__).parent / "data" / "water_box32_active.npz"


def phase_augment(args) -> dict:
    """One round of active learning for the box: label, at GFN2-xTB, (a) frames of the
    model's own MD (``--md-out`` of a previous md phase: where it goes wrong — with the first
    model an H left its O within 0.5 ps) and (b) shipped box frames with O–H bonds stretched
    to 1.1–1.8 Å (the bond-breaking region 300 K MD at the xTB level never samples). Written
    to benchmarks/data/water_box32_active.npz; the train phase adds it when it exists."""
    from qdyn.data import TBLiteLabeler, label_dataset, read, write

    box = load_shipped("water_box32")
    cell = box.cell[0]
    traj = read(Path(args.md_out) / "trajectory.xyz")
    pick = np.linspace(0, traj.n_frames - 1, args.n_active).round().astype(int)
    rng = np.random.default_rng(args.seed)
    Z = box.Z[0]
    O, H = np.flatnonzero(Z == 8), np.flatnonzero(Z == 1)
    stretched = []
    for f in range(args.n_stretched):
        R = box.R[f % box.n_frames].copy()
        for h in rng.choice(H, size=2, replace=False):
            d = R[h] - R[O]
            d -= cell.diagonal() * np.round(d / cell.diagonal())
            o = int(np.argmin(np.linalg.norm(d, axis=1)))
            u = d[o] / np.linalg.norm(d[o])
            R[h] = R[O[o]] + rng.uniform(1.1, 1.8) * u
        stretched.append(R)
    R_all = np.concatenate([traj.R[pick]] + ([np.stack(stretched)] if stretched else []))
    n = len(R_all)
    previous = read(AUGMENT) if AUGMENT.exists() else None
    rnd = 0 if previous is None else int(previous.extras["round"].max()) + 1
    configs = Dataset(R=R_all, Z=np.broadcast_to(Z, (n, len(Z))).copy(), cell=np.broadcast_to(cell, (n, 3, 3)).copy(),
                      pbc=np.ones((n, 3), bool),
                      extras={"n_molecules": np.full(n, 32), "round": np.full(n, rnd),
                              "origin": np.array(["model_md"] * len(pick) + ["stretched"] * len(stretched))})
    lab = TBLiteLabeler(**{k: v for k, v in box.metadata["labeler"].items()
                           if k in ("method", "accuracy", "electronic_temperature", "max_iterations", "charge",
                                    "multiplicity", "cell")})
    t0 = time.perf_counter()
    ds = label_dataset(configs, lab, workers=args.workers)
    # rounds accumulate: round k holds the frames of the model trained with rounds < k
    description = ("active learning for the 32-water box at GFN2-xTB (as water_box32): per round, frames of the "
                   "hybrid model's own NVT MD, trained with the earlier rounds; round 0 also box frames with two "
                   "O-H bonds stretched to 1.1-1.8 Angstrom (extras: round, origin)")
    command = (previous.metadata.get("command", "") + " ; " if previous is not None else "") + \
        f"python benchmarks/liquid_water.py --phase augment --md-out {args.md_out} --n-stretched {args.n_stretched}"
    meta = {**ds.metadata, "description": description, "command": command}
    if previous is not None:
        ds = Dataset.concatenate([previous, ds], metadata=meta)
    else:
        ds = Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, cell=ds.cell, pbc=ds.pbc, extras=ds.extras, metadata=meta)
    AUGMENT.parent.mkdir(exist_ok=True)
    write(ds, AUGMENT)
    out = {"round": rnd, "frames": ds.n_frames, "converged": int(ds.extras["converged"].sum()),
           "label_seconds": time.perf_counter() - t0}
    print(out, flush=True)
    return out


def phase_train(args) -> dict:
    from qdyn.train import parse_config, train
    from qdyn.train.trainer import predict, split_data

    ds = training_data(cluster_stride=args.cluster_stride)
    if AUGMENT.exists() and not args.no_active:
        from qdyn.data import read

        act = read(AUGMENT).converged_only()
        # Frames of a liquid already torn apart (the first model's MD had 26 of 64 H free after
        # 10 ps, 124 eV above the box minimum at GFN2-xTB) are states the dynamics must never
        # reach; their energies would set the loss's energy scale. Keep frames within
        # --active-cap eV per molecule of the shipped box's lowest energy.
        e_min = float(load_shipped("water_box32").E.min())
        act = act.subset(np.flatnonzero((act.E - e_min < args.active_cap * 32)
                                        & (act.extras["round"] <= args.max_round)))
        act = Dataset(R=act.R, Z=act.Z, E=act.E, F=act.F, cell=act.cell, pbc=act.pbc,
                      extras={"n_molecules": act.extras["n_molecules"]}, metadata=act.metadata)
        ds = Dataset.concatenate([ds, act], metadata=ds.metadata)
        print(f"with {act.n_frames} active-learning frames from {AUGMENT}", flush=True)
    n = ds.n_frames
    n_val, n_test = max(n // 10, 1), max(n // 10, 1)
    print(f"{n} training frames", flush=True)
    cfg = parse_config({
        "model": MODEL,
        "data": {"path": "shipped:water_box32", "n_train": n - n_val - n_test, "n_val": n_val, "n_test": n_test,
                 "split_seed": 0},
        "optim": {"learning_rate": args.lr, "schedule": "cosine", "final_lr_fraction": 0.05},
        "epochs": args.epochs, "batch_size": args.batch, "seed": 0, "staged": True,
        "pretrain_epochs": args.pretrain_epochs, "checkpoint_every": args.epochs,
    })
    t0 = time.perf_counter()
    res = train(cfg, args.run, data=ds, progress=True)
    _, _, test = split_data(ds, cfg.data)
    box_test = test.subset(np.flatnonzero(test.extras["n_molecules"] == 32))
    out = {"train_seconds": time.perf_counter() - t0, "frames": n, "metrics": res.metrics}
    if box_test.n_frames:
        E, F = predict(res.model, res.params, box_test)
        out["box_test"] = {"frames": box_test.n_frames,
                           "energy_mae_meV_per_molecule": float(np.mean(np.abs(E - box_test.E)) / 32 * 1e3),
                           "force_mae_meV_per_A": float(np.mean(np.abs(F - box_test.F)[box_test.Z > 0]) * 1e3)}
    (Path(args.run) / "liquid_training.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "metrics"}, indent=1), flush=True)
    return out


def phase_md(args) -> dict:
    from qdyn.descriptors.neighbors import neighbor_list_fn
    from qdyn.md.analysis import radial_distribution
    from qdyn.md import BlowUpError, MDOutput, MDSettings, model_energy_fn, run_md
    from qdyn.system import System
    from qdyn.train import load_run

    model, params, info = load_run(args.run)
    if args.add_core_radii and not model.config.get("core_radii"):
        # a run trained before the wall existed: the wall is zero wherever the training data
        # is, so the trained parameters stay valid with it
        from qdyn.models.core_repulsion import core_radii_from_data
        from qdyn.models import build_model

        ds = training_data(cluster_stride=args.cluster_stride)
        radii = core_radii_from_data(ds.R, ds.Z, cell=ds.cell, pbc=ds.pbc)
        model = build_model({**model.config, "core_radii": radii})
        info = {**info, "model": {**info["model"], "core_radii": radii}}
        print(f"added core repulsion {radii}", flush=True)
    box = load_shipped("water_box32")
    L = float(box.cell[0, 0, 0])
    np.testing.assert_allclose(L, box_length(32, 0.997), rtol=1e-9)
    R0 = box.R[args.start_frame]
    Z = box.Z[args.start_frame]
    system = System.create(Z, box=box.cell[args.start_frame])
    nbr_fn = neighbor_list_fn(box.cell[args.start_frame], model.config["cutoff"], skin=0.5)
    log = open(args.log, "a") if args.log else None

    def progress(d):
        line = (f"step {d['step']}  t = {d['time_ps']:.2f} ps  T = {d['temperature_K']:.0f} K  "
                f"{d.get('ns_per_day', float('nan')):.3f} ns/day")
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()

    t0 = time.perf_counter()
    try:
        res = run_md(model_energy_fn(model.apply), params, R0, system,
                     MDSettings(ensemble="nvt-langevin", dt_fs=args.dt, n_steps=args.steps, temperature_K=300.0,
                                friction_per_fs=0.01),
                     output=MDOutput(out_dir=args.md_out, trajectory_formats=("extxyz",), stride=args.stride,
                                     frames_per_block=args.frames_per_block, progress=progress, progress_every_s=30.0),
                     key=jax.random.PRNGKey(args.seed), neighbor_fn=nbr_fn)
    except BlowUpError as exc:
        # A blow-up is a result too: record where and why instead of losing the run.
        out = {"model": info["model"], "run": str(args.run), "blew_up": True, "error": str(exc), "step": exc.step,
               "md": {"ensemble": "nvt-langevin", "dt_fs": args.dt, "steps": args.steps, "neighbour_list": True},
               "wall_s": time.perf_counter() - t0}
        save("liquid_water", {**out, **machine_info()})
        print(json.dumps(out, indent=1), flush=True)
        return out
    wall = time.perf_counter() - t0
    t_ps = res.time_fs / 1e3
    prod = t_ps >= args.equilibration_ps
    X = res.position[prod, 0]
    r, g_oo = radial_distribution(X, Z, [L] * 3, pair=(8, 8), n_bins=120)
    _, g_oh = radial_distribution(X, Z, [L] * 3, pair=(8, 1), n_bins=120)
    _, g_hh = radial_distribution(X, Z, [L] * 3, pair=(1, 1), n_bins=120)
    first = (r > 2.2) & (r < 3.4)
    peak_oo = float(r[first][np.argmax(g_oo[first])])
    inter = (r > 1.4) & (r < 2.4)  # the hydrogen-bond O···H peak, past the covalent O–H
    peak_oh_hb = float(r[inter][np.argmax(g_oh[inter])])
    mass = float(np.sum([{1: 1.008, 8: 15.999}[int(z)] for z in Z]))
    density = mass / L**3 * units.AMU_PER_A3_G_CM3
    T = res.temperature[:, 0]
    # Intramolecular sanity (no dissociation): every H keeps an O within 1.2 Å in every frame.
    d = X[:, Z == 1][:, :, None] - X[:, Z == 8][:, None]
    d -= L * np.round(d / L)
    nearest_o = np.linalg.norm(d, axis=-1).min(-1)  # [frames, n_H]
    max_oh = float(nearest_o.max())
    # chemistry intact? an H farther than 1.25 Å from every O has left its molecule
    free_h = (nearest_o > 1.25).sum(-1)
    # holes below the data: the closest O–O and H–H pairs of the whole production run
    def closest(za, zb):
        a, b = X[:, Z == za], X[:, Z == zb]
        dd = a[:, :, None] - b[:, None]
        dd -= L * np.round(dd / L)
        dist = np.linalg.norm(dd, axis=-1)
        if za == zb:
            dist = dist + np.eye(dist.shape[-1]) * 1e9
        return float(dist.min())
    out = {
        "model": info["model"], "run": str(args.run),
        "md": {"ensemble": "nvt-langevin", "dt_fs": args.dt, "steps": args.steps, "simulated_ps": float(t_ps[-1]),
               "temperature_target_K": 300.0, "friction_per_fs": 0.01, "neighbour_list": True,
               "equilibration_ps": args.equilibration_ps, "frames_analysed": int(prod.sum()),
               "wall_s": wall, "timings": res.timings, "n_reallocations": res.n_reallocations},
        "box_A": L, "density_g_cm3": density, "n_molecules": 32,
        "temperature_mean_K": float(T[prod].mean()), "temperature_std_K": float(T[prod].std()),
        "potential_eV_per_molecule_mean": float(res.potential[prod, 0].mean() / 32),
        "first_OO_peak_A": peak_oo, "first_OO_peak_g": float(g_oo[first].max()),
        "OH_hydrogen_bond_peak_A": peak_oh_hb, "max_nearest_OH_A": max_oh, "blew_up": False,
        "closest_OO_A": closest(8, 8), "closest_HH_A": closest(1, 1),
        "free_H_final": int(free_h[-1]), "frames_with_free_H_fraction": float((free_h > 0).mean()),
        "free_H_max": int(free_h.max()),
        "core_radii": model.config.get("core_radii"),
        "rdf": {"r_A": r.tolist(), "g_OO": g_oo.tolist(), "g_OH": g_oh.tolist(), "g_HH": g_hh.tolist()},
    }
    save("liquid_water", {**out, **machine_info()})
    plot(RESULTS / "liquid_water.png", out, t_ps, T)
    print(json.dumps({k: v for k, v in out.items() if k not in ("rdf", "model")}, indent=1), flush=True)
    return out


def plot(path: Path, out: dict, t_ps, T) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    rdf = out["rdf"]
    a.plot(rdf["r_A"], rdf["g_OO"], label=f"O–O (first peak {out['first_OO_peak_A']:.2f} Å)")
    a.plot(rdf["r_A"], rdf["g_OH"], label=f"O–H (H-bond peak {out['OH_hydrogen_bond_peak_A']:.2f} Å)")
    a.plot(rdf["r_A"], rdf["g_HH"], label="H–H", alpha=0.6)
    a.axvline(2.8, color="0.6", ls=":", lw=1)
    a.set_xlabel("r [Å]")
    a.set_ylabel("g(r)")
    a.set_ylim(0, max(4.0, 1.1 * out["first_OO_peak_g"]))
    a.legend(fontsize=8)
    a.set_title(f"32 H2O, {out['density_g_cm3']:.3f} g/cm³, NVT 300 K, {out['md']['simulated_ps']:.1f} ps (hybrid model)",
                fontsize=9)
    b.plot(t_ps, T, lw=0.6)
    b.axhline(300, color="0.5", ls="--", lw=1)
    b.set_xlabel("t [ps]")
    b.set_ylabel("T [K]")
    b.set_title(f"mean {out['temperature_mean_K']:.0f} ± {out['temperature_std_K']:.0f} K", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["augment", "train", "md", "all"], default="all")
    ap.add_argument("--n-active", type=int, default=40, help="augment: frames from the model's MD")
    ap.add_argument("--n-stretched", type=int, default=30, help="augment: box frames with stretched O-H")
    ap.add_argument("--workers", type=int, default=2, help="augment: labelling processes")
    ap.add_argument("--no-active", action="store_true", help="train: leave the active-learning frames out")
    ap.add_argument("--max-round", type=int, default=99, help="train: active-learning rounds 0..this")
    ap.add_argument("--active-cap", type=float, default=1.0,
                    help="train: keep active-learning frames below this many eV/molecule above the box minimum")
    ap.add_argument("--run", type=Path, default=Path("/tmp/qdyn-liquid-run"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--cluster-stride", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--dt", type=float, default=0.5)
    ap.add_argument("--stride", type=int, default=20)
    ap.add_argument("--frames-per-block", type=int, default=25)
    ap.add_argument("--equilibration-ps", type=float, default=1.0)
    ap.add_argument("--start-frame", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--md-out", type=Path, default=None, help="trajectory/checkpoint folder (default: none)")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--add-core-radii", action="store_true",
                    help="md: give a run trained without the core repulsion its wall (radii from the training data)")
    args = ap.parse_args()
    if args.phase == "augment":
        phase_augment(args)
    if args.phase in ("train", "all"):
        phase_train(args)
    if args.phase in ("md", "all"):
        phase_md(args)


if __name__ == "__main__":
    main()
