"""Study: robustness to noisy training labels — siVQLM vs generic QNN vs BP network (H2O).

Gaussian noise of growing size is added to the training energies and forces (σ_E = f × the
spread of the energies, σ_F = f × the RMS force, f = noise fraction; one noise draw per
level, seed 0); every model is then evaluated on the **clean** labels of the held-out test
frames. The three models have equal budgets of ≈65 parameters (half the depth of the
benchmarks/accuracy.py rows, which the shared machine allows), trained by the same code with
the same settings on 200 frames.

The noise is added to every frame the trainer is given; the test frames are then taken
from the clean dataset by the trainer's own split (same seed, same sizes), so training and
validation see noisy labels and the test metrics are clean.

Usage: python benchmarks/study_noisy_labels.py [--quick] [--epochs N] [--levels 0 0.3 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from _studies import fit_result, markdown_table, train_config  # noqa: E402
from qdyn.data.shipped import load_shipped  # noqa: E402
from qdyn.train import parse_config  # noqa: E402
from qdyn.train.trainer import evaluate, split_data  # noqa: E402

NAME = "study_noisy_labels"
DATA = {"path": "shipped:H2O", "n_train": 200, "n_val": 50, "n_test": 50}
MODELS = {  # equal budgets of ≈65 parameters: half the depth of the benchmarks/accuracy.py rows
    "siVQLM": ({"family": "sivqlm", "template": "H2O", "layers": 8, "blocks": 2}, 2e-2),
    "generic QNN": ({"family": "generic", "template": "H2O", "layers": 4}, 2e-2),
    "BPNN (equal budget)": ({"family": "bpnn", "hidden": [1]}, 1e-2),
}


def with_label_noise(ds, fraction: float, *, seed: int = 0):
    """A copy of ``ds`` with Gaussian noise on E (σ = fraction × std E) and F (σ = fraction
    × RMS F, real atoms only); returns (dataset, σ_E [eV], σ_F [eV/Å])."""
    rng = np.random.default_rng(seed)
    sigma_E = fraction * float(np.std(ds.E))
    mask = ds.mask[..., None]
    sigma_F = fraction * float(np.sqrt(np.mean(ds.F[ds.mask] ** 2)))
    E = ds.E + sigma_E * rng.standard_normal(ds.E.shape)
    F = np.where(mask, ds.F + sigma_F * rng.standard_normal(ds.F.shape), 0.0)
    return dataclasses.replace(ds, E=E, F=F), sigma_E, sigma_F


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50, help="training epochs per run")
    ap.add_argument("--levels", type=float, nargs="*", default=[0.0, 0.3, 1.0],
                    help="noise fractions f (σ_E = f × std E, σ_F = f × RMS F)")
    ap.add_argument("--quick", action="store_true", help="BPNN only, 2 epochs, two levels (smoke run)")
    ap.add_argument("--out", type=Path, default=Path("runs/study_noisy_labels"), help="run directories")
    args = ap.parse_args()
    clean = load_shipped("H2O")
    data, epochs, levels, models = DATA, args.epochs, args.levels, MODELS
    if args.quick:
        data, epochs, levels = {**DATA, "n_train": 16, "n_val": 4, "n_test": 8}, 2, [0.0, 1.0]
        models = {"BPNN (equal budget)": MODELS["BPNN (equal budget)"]}
    clean_test = split_data(clean, parse_config({"data": data}).data)[2]
    rows = []
    for level in levels:
        noisy, sigma_E, sigma_F = with_label_noise(clean, level)
        for label, (model, lr) in models.items():
            cfg = train_config(model, data, epochs=epochs, lr=lr)
            row, res = fit_result(cfg, args.out / f"{label.split()[0]}_{level:g}", dataset=noisy)
            test = evaluate(res.model, res.params, clean_test)
            row.update(model=label, noise_fraction=level, sigma_E_meV=1e3 * sigma_E, sigma_F_meV_per_A=1e3 * sigma_F,
                       epochs=epochs, clean_energy_mae_meV=test["energy_mae_meV"],
                       clean_force_mae_meV_per_A=test["force_mae_meV_per_A"])
            rows.append(row)
            print(f"f={level:4.2f} {label:20s} clean-test E MAE {row['clean_energy_mae_meV']:7.2f} meV  "
                  f"F MAE {row['clean_force_mae_meV_per_A']:7.1f} meV/Å  (noisy-label test: "
                  f"{row['energy_mae_meV']:.1f}, {row['force_mae_meV_per_A']:.0f})  {row['train_seconds']:.0f} s",
                  flush=True)
    if args.quick:
        return
    results = {"rows": rows, **machine_info()}
    save(NAME, results)
    write_report(results)


def write_report(results: dict) -> None:
    rows = results["rows"]
    table = markdown_table(
        ["noise f", "σ_E [meV]", "σ_F [meV/Å]", "model", "parameters", "clean test E MAE [meV]",
         "clean test F MAE [meV/Å]", "wall [s]", "load (1 min)"],
        [[f"{r['noise_fraction']:g}", f"{r['sigma_E_meV']:.1f}", f"{r['sigma_F_meV_per_A']:.0f}", r["model"],
          r["n_params"], f"{r['clean_energy_mae_meV']:.2f}", f"{r['clean_force_mae_meV_per_A']:.1f}",
          f"{r['train_seconds']:.0f}", r["load"][0]] for r in rows])
    text = (f"`python benchmarks/study_noisy_labels.py --epochs {rows[0]['epochs']}` on {results['date']}, "
            f"{results['machine']['cpu']}, jax {results['versions']['jax']}, float64. shipped:H2O (200/50/50, "
            "split seed 0); Gaussian noise on training (and validation) E and F, errors on the clean test labels. "
            "Equal budgets of ≈65 parameters (siVQLM D = 8, B = 2; generic D = 4; BPNN hidden [1]), 200 training frames, same trainer settings.\n\n" + table
            + "\n\n![noisy labels](results/study_noisy_labels.png)")
    update_readme_section(NAME, "### Robustness to noisy labels (H2O)", text)
    plot(rows)


def plot(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k, label in enumerate(dict.fromkeys(r["model"] for r in rows)):
        sel = [r for r in rows if r["model"] == label]
        x = [r["noise_fraction"] for r in sel]
        for ax, key in zip(axes, ("clean_energy_mae_meV", "clean_force_mae_meV_per_A")):
            ax.plot(x, [r[key] for r in sel], "-o", color=f"C{k}", label=label)
    for ax, unit, noise in zip(axes, ("meV", "meV/Å"), ("sigma_E_meV", "sigma_F_meV_per_A")):
        sel = [r for r in rows if r["model"] == rows[0]["model"] and r["noise_fraction"] > 0]  # log axis
        ax.plot([r["noise_fraction"] for r in sel], [r[noise] for r in sel], "k:", label="label noise σ")
        ax.set(xlabel="noise fraction f", ylabel=f"clean test MAE [{unit}]", yscale="log")
    axes[0].legend(fontsize=8)
    fig.suptitle("H2O: training on noisy labels, errors on clean labels")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
