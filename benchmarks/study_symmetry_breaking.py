"""Study: trainable symmetry breaking (RZ(ε) layers) on vs off in the siVQLM, H2O and LiH.

The paper's siVQLM can append RZ(ε) rotations to every layer (``symmetry_breaking: true``),
which breaks rotation invariance: ε starts at 0 (the invariant model) and training decides
how far to leave it. For each system and seed, the same model is trained with and without ε
(same split, init seed, batches, epochs); the table gives test MAE of E and F and how far the
trained ε-model is from invariant (max |ΔE| and |ΔF| under random rotations + reflections of
test frames, :func:`qdyn.testing.invariance_errors`).

Usage: python benchmarks/study_symmetry_breaking.py [--quick] [--epochs N] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from _studies import fit_result, markdown_table, train_config  # noqa: E402
from qdyn.testing import invariance_errors  # noqa: E402
from qdyn.train import parse_config  # noqa: E402
from qdyn.train.trainer import load_data, split_data  # noqa: E402

NAME = "study_symmetry_breaking"
# LiH: the accuracy.py model (D = 16, B = 2) and split; H2O: half its depth and training
# set (D = 8, B = 2; 200 frames), which the shared 2-core machine allows for several seeds
SYSTEMS = {
    "H2O": ({"family": "sivqlm", "template": "H2O", "layers": 8, "blocks": 2},
            {"path": "shipped:H2O", "n_train": 200, "n_val": 50, "n_test": 50}),
    "LiH": ({"family": "sivqlm", "template": "LiH", "layers": 16, "blocks": 2},
            {"path": "shipped:LiH", "n_train": 140, "n_val": 20, "n_test": 40}),
}


def symmetry_violation(res, test_ds, n_frames: int = 5) -> tuple[float, float]:
    """Max |ΔE| [meV] and |ΔF| [meV/Å] of a trained model under random O(3) elements on
    test frames (0 to round-off for an invariant model)."""
    dE = dF = 0.0
    for i in range(min(n_frames, test_ds.n_frames)):
        R, system = test_ds.to_system(i)
        e, f = invariance_errors(res.model, res.params, R, system, key=jax.random.PRNGKey(i), n_trials=3)
        dE, dF = max(dE, e), max(dF, f)
    return 1e3 * dE, 1e3 * dF


def test_split(config: dict):
    """The test frames a training config holds out (the trainer's own split)."""
    cfg = parse_config(config)
    return split_data(load_data(cfg.data), cfg.data)[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60, help="training epochs per run")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="init/batch-order seeds")
    ap.add_argument("--only", choices=list(SYSTEMS), help="one system")
    ap.add_argument("--quick", action="store_true", help="LiH, 2 epochs, one seed, tiny split (smoke run)")
    ap.add_argument("--out", type=Path, default=Path("runs/study_symmetry_breaking"), help="run directories")
    args = ap.parse_args()
    systems = {"LiH": SYSTEMS["LiH"]} if args.quick else SYSTEMS
    epochs, seeds = (2, [0]) if args.quick else (args.epochs, args.seeds)
    rows = []
    for name, (model, data) in systems.items():
        if args.only and name != args.only:
            continue
        if args.quick:
            model, data = {**model, "layers": 2}, {**data, "n_train": 16, "n_val": 4, "n_test": 4}
        for seed in seeds:
            for eps in (False, True):
                cfg = train_config({**model, "symmetry_breaking": eps}, data, epochs=epochs, seed=seed)
                row, res = fit_result(cfg, args.out / f"{name}_seed{seed}_{'eps' if eps else 'inv'}")
                row["violation_E_meV"], row["violation_F_meV_per_A"] = symmetry_violation(res, test_split(cfg))
                if eps:
                    row["eps_max_abs"] = float(np.max(np.abs(np.asarray(res.params["eps"]))))
                row.update(system=name, seed=seed, symmetry_breaking=eps, epochs=epochs)
                rows.append(row)
                print(f"{name} seed {seed} ε {'on ' if eps else 'off'}  E MAE {row['energy_mae_meV']:7.2f} meV  "
                      f"F MAE {row['force_mae_meV_per_A']:7.1f} meV/Å  rotation ΔE {row['violation_E_meV']:.2e} meV  "
                      f"{row['train_seconds']:.0f} s  load {row['load']}", flush=True)
    if args.quick:
        return
    results = {"rows": rows, **machine_info()}
    save(NAME, results)
    write_report(results)


def summary(rows):
    """Per (system, ε): mean ± std over seeds of the test MAEs and the largest violation."""
    out = []
    for name in dict.fromkeys(r["system"] for r in rows):
        for eps in (False, True):
            sel = [r for r in rows if r["system"] == name and r["symmetry_breaking"] == eps]
            E = np.array([r["energy_mae_meV"] for r in sel])
            F = np.array([r["force_mae_meV_per_A"] for r in sel])
            out.append({"system": name, "eps": eps, "n": len(sel), "E": (E.mean(), E.std()), "F": (F.mean(), F.std()),
                        "vE": max(r["violation_E_meV"] for r in sel), "vF": max(r["violation_F_meV_per_A"] for r in sel),
                        "params": sel[0]["n_params"]})
    return out


def write_report(results: dict) -> None:
    rows = results["rows"]
    table = markdown_table(
        ["system", "RZ(ε)", "parameters", "seeds", "E MAE [meV]", "F MAE [meV/Å]", "max rotation ΔE [meV]",
         "max rotation ΔF [meV/Å]"],
        [[s["system"], "on" if s["eps"] else "off", s["params"], s["n"], f"{s['E'][0]:.2f} ± {s['E'][1]:.2f}",
          f"{s['F'][0]:.1f} ± {s['F'][1]:.1f}", f"{s['vE']:.1e}", f"{s['vF']:.1e}"] for s in summary(rows)])
    per_seed = markdown_table(
        ["system", "seed", "RZ(ε)", "E MAE [meV]", "F MAE [meV/Å]", "max |ε|", "wall [s]", "load (1 min)"],
        [[r["system"], r["seed"], "on" if r["symmetry_breaking"] else "off", f"{r['energy_mae_meV']:.2f}",
          f"{r['force_mae_meV_per_A']:.1f}", f"{r.get('eps_max_abs', 0.0):.3f}", f"{r['train_seconds']:.0f}",
          r["load"][0]] for r in rows])
    text = (f"`python benchmarks/study_symmetry_breaking.py --epochs {rows[0]['epochs']}` on {results['date']}, "
            f"{results['machine']['cpu']}, jax {results['versions']['jax']}, float64. siVQLM H2O D = 8, B = 2 (200 "
            "training frames), LiH D = 16, B = 2 (the accuracy.py split), trained with and without trainable RZ(ε) layers; mean ± std over "
            "seeds of the test MAE; rotation Δ: largest change of E (F rotated back) under random O(3) elements "
            "on 5 test frames.\n\n" + table + "\n\nPer seed:\n\n" + per_seed
            + "\n\n![symmetry breaking](results/study_symmetry_breaking.png)")
    update_readme_section(NAME, "### Symmetry breaking: trainable RZ(ε) on vs off", text)
    plot(rows)


def plot(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, unit in zip(axes, ("energy_mae_meV", "force_mae_meV_per_A"), ("meV", "meV/Å")):
        for j, eps in enumerate((False, True)):
            for i, name in enumerate(systems):
                vals = [r[key] for r in rows if r["system"] == name and r["symmetry_breaking"] == eps]
                x = i + (j - 0.5) * 0.3
                ax.bar(x, np.mean(vals), width=0.28, color=f"C{j}", alpha=0.6,
                       label=("RZ(ε) on" if eps else "invariant (off)") if i == 0 else None)
                ax.plot([x] * len(vals), vals, "k.", ms=5)
        ax.set_xticks(range(len(systems)), systems)
        ax.set_yscale("log")
        ax.set_ylabel(f"test MAE [{unit}]")
    axes[0].legend(fontsize=8)
    fig.suptitle("siVQLM with and without trainable symmetry breaking (dots: seeds)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
