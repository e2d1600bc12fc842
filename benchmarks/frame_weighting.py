"""Energy-based frame weights on near-equilibrium + stretched-bond water (``loss.frame_weight_scale_eV``).

md_stability.py's model (siVQLM D = 16, B = 2) trained on the shipped near-equilibrium `H2O`
frames and `H2O_stretched` (O–H out to 2 Å, up to 9 eV above the minimum), once with every
frame weighing 1 and once per weight scale s (w = s / (s + E − E_min), qdyn.train.weighting),
each for several initialisation seeds (same split, epochs and optimiser). Measured per run:
test RMSE on the near-equilibrium and on the stretched test frames, and the model along the
B3LYP one-bond scan (O–H 0.75–2.0 Å) relative to the lowest near-equilibrium frame. The first
seed's model of every setting then runs NVT MD (1024 replicas, 300 K, as md_stability.py but
shorter): does any replica dissociate?

Usage: python benchmarks/frame_weighting.py [--epochs 400] [--scales 2.0 0.5 0.2] [--seeds 0 1 2]
       [--md-replicas 1024] [--md-ps 5] [--readme]
Writes results/frame_weighting.{json,png} and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from md_stability import bond_scan, train_model  # noqa: E402  (switches float64 on)
from _common import RESULTS, machine_info, mean_and_range, save, update_readme_section  # noqa: E402

import numpy as np  # noqa: E402


def one_run(run_dir: Path, epochs: int, scale, seed: int) -> dict:
    from qdyn.train import load_run

    t0 = time.perf_counter()
    row = train_model(str(run_dir), epochs, frame_weight_scale_eV=scale, progress=False, seed=seed)
    model, params, _ = load_run(run_dir)
    scan = bond_scan(model, params)
    err = np.asarray(scan["model_eV"]) - np.asarray(scan["reference_eV"])
    r = np.asarray(scan["r_OH_A"])
    row.update(scale_eV=scale, seed=seed, run=str(run_dir), seconds=time.perf_counter() - t0, bond_scan=scan,
               scan_max_abs_error_eV=float(np.max(np.abs(err))),
               scan_max_abs_error_below_1_3_A_eV=float(np.max(np.abs(err[r <= 1.3]))))
    if scale is not None:
        row["frame_weights"] = json.loads((run_dir / "metrics.json").read_text()).get("frame_weights")
    print(f"scale {scale}, seed {seed}: near-eq {row['near_equilibrium']}, stretched {row['stretched']}, "
          f"scan max |error| {row['scan_max_abs_error_eV']:.3f} eV ({row['seconds']:.0f} s)", flush=True)
    return row


def _label(scale) -> str:
    return "uniform" if scale is None else f"s = {scale:g} eV"


def md_check(run_dir: str, replicas: int, ps: float, dt: float = 0.5, temperature: float = 300.0) -> dict:
    """NVT Langevin of ``replicas`` water molecules with a trained model: replicas whose longer
    O–H bond ends above 1.5 Å (dissociated), the final bond and angle ranges, ⟨T⟩."""
    import jax

    from md_stability import geometry
    from qdyn import md
    from qdyn.structures import water
    from qdyn.train import load_run

    model, params, _ = load_run(run_dir)
    R, system = water()
    steps = int(round(ps * 1000 / dt / 100)) * 100
    res = md.run_md(md.model_energy_fn(model.apply), params, R, system,
                    md.MDSettings(ensemble="nvt-langevin", dt_fs=dt, n_steps=steps, temperature_K=temperature,
                                  replicas=replicas, remove_rotation=True),
                    output=md.MDOutput(stride=100, progress=None), key=jax.random.PRNGKey(7))
    bonds, angles = geometry(np.asarray(res.state.position))
    T = res.temperature
    return {"replicas": replicas, "ps": steps * dt / 1000, "dissociated": int((bonds.max(-1) > 1.5).sum()),
            "final_OH_range_A": [float(bonds.min()), float(bonds.max())],
            "final_HOH_range_deg": [float(angles.min()), float(angles.max())],
            "mean_temperature_K": float(T[T.shape[0] // 2:].mean())}


def _settings(payload: dict) -> list[list[dict]]:
    """The runs grouped by weight setting, in the order they ran."""
    groups: dict = {}
    for r in payload["runs"]:
        groups.setdefault(r["scale_eV"], []).append(r)
    return list(groups.values())


def readme_text(payload: dict) -> str:
    lines = ["| frame weights | near-eq. E RMSE [meV] | near-eq. F RMSE [meV/Å] | stretched E RMSE [meV] | "
             "stretched F RMSE [meV/Å] | scan max abs error, O–H ≤ 1.3 Å [eV] | scan, all [eV] | train weights | "
             "MD: dissociated / replicas |",
             "|---|---|---|---|---|---|---|---|---|"]
    for runs in _settings(payload):
        first = runs[0]
        fw = first.get("frame_weights")
        span = "1" if not fw else f"{fw['train_min']:.2f}–{fw['train_max']:.2f}"
        mdc = first.get("md")
        md_text = "–" if not mdc else f"{mdc['dissociated']} / {mdc['replicas']}"
        lines.append(" | ".join([
            f"| {_label(first['scale_eV'])}",
            mean_and_range([r["near_equilibrium"]["energy_rmse_meV"] for r in runs], ".1f"),
            mean_and_range([r["near_equilibrium"]["force_rmse_meV_per_A"] for r in runs], ".0f"),
            mean_and_range([r["stretched"]["energy_rmse_meV"] for r in runs], ".0f"),
            mean_and_range([r["stretched"]["force_rmse_meV_per_A"] for r in runs], ".0f"),
            mean_and_range([r["scan_max_abs_error_below_1_3_A_eV"] for r in runs], ".3f"),
            mean_and_range([r["scan_max_abs_error_eV"] for r in runs], ".3f"),
            span, md_text]) + " |")
    r0 = payload["runs"][0]
    seeds = sorted({r["seed"] for r in payload["runs"]})
    lines += ["", f"Mean (min–max) over initialisation seeds {', '.join(map(str, seeds))}; test frames: "
              f"{r0['near_equilibrium']['n_test']} near-equilibrium, {r0['stretched']['n_test']} stretched (one split "
              "for every run). Weights are normalised to mean 1 over the training frames (range of the training "
              "weights shown). MD: the first seed's model, NVT Langevin at 300 K, 0.5 fs, "
              + (f"{payload['md']['replicas']} replicas × {payload['md']['ps']:g} ps; a replica counts as dissociated "
                 "when its longer O–H ends above 1.5 Å. " if payload.get("md") else "")
              + "Plot: results/frame_weighting.png."]
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_scan, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
    first = payload["runs"][0]["bond_scan"]
    ax_scan.plot(first["r_OH_A"], first["reference_eV"], "k.-", label="B3LYP")
    for runs in _settings(payload):
        r = runs[0]
        ax_scan.plot(r["bond_scan"]["r_OH_A"], r["bond_scan"]["model_eV"], label=_label(r["scale_eV"]))
    ax_scan.set(xlabel="O–H / Å", ylabel="E − E_min / eV", title="one-bond scan (first seed)")
    ax_scan.legend(fontsize=8)
    for runs in _settings(payload):
        x = [r["near_equilibrium"]["force_rmse_meV_per_A"] for r in runs]
        y = [r["stretched"]["force_rmse_meV_per_A"] for r in runs]
        ax_err.scatter(x, y, label=_label(runs[0]["scale_eV"]))
    ax_err.legend(fontsize=8)
    ax_err.set(xlabel="near-equilibrium force RMSE / meV/Å", ylabel="stretched force RMSE / meV/Å",
               title="test errors, every seed")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_readme(payload: dict) -> None:
    m = payload["machine"]
    header = (f"`python benchmarks/frame_weighting.py` (made {payload['date'][:10]} on {m['cpu']}, {m['cores']} cores; "
              f"results/frame_weighting.json): siVQLM[H2O] D = 16, B = 2 (131 parameters), {payload['epochs']} epochs "
              "on `H2O` + "
              "`H2O_stretched` (md_stability.py's training), every frame weighing 1 or weighted by "
              "w = s / (s + E − E_min) (`loss.frame_weight_scale_eV`, docs/training.md).")
    update_readme_section("frame_weighting", header, readme_text(payload))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 0.5, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--md-replicas", type=int, default=1024, help="0: no MD check")
    ap.add_argument("--md-ps", type=float, default=5.0)
    ap.add_argument("--runs", default="runs/frame_weighting")
    ap.add_argument("--readme", action="store_true", help="only rewrite the README section from the JSON")
    args = ap.parse_args()
    if args.readme:
        write_readme(json.loads((RESULTS / "frame_weighting.json").read_text()))
        return
    runs = [one_run(Path(args.runs) / _label(s).replace(" ", "").replace("=", "_") / f"seed{seed}", args.epochs, s, seed)
            for s in [None, *args.scales] for seed in args.seeds]
    payload = {**machine_info(), "epochs": args.epochs, "runs": runs}
    save("frame_weighting", payload)  # the training results stand even if the MD check is cut short
    if args.md_replicas:
        payload["md"] = {"replicas": args.md_replicas, "ps": args.md_ps}
        for group in _settings(payload):
            group[0]["md"] = md_check(group[0]["run"], args.md_replicas, args.md_ps)
            print(f"MD {_label(group[0]['scale_eV'])}: {group[0]['md']}", flush=True)
    save("frame_weighting", payload)
    plot(payload, RESULTS / "frame_weighting.png")
    write_readme(payload)
    print(readme_text(payload))


if __name__ == "__main__":
    main()
