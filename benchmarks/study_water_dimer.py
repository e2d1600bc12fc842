"""Study: fitting the siVQLM to the shipped water dimer, next to the hybrid and the BP network.

The siVQLM had never been fitted to ``shipped:water_dimer`` (6 atoms, 6 encoded vectors, one
qubit each). Rows vary the template circuit (depth D, exchange blocks B, ring vs all-pair
couplings, parity average) and the training (epochs, learning rate, force weight); the
classical BP network and the hybrid are the references. Same split (seed 0, 240/30/30),
same trainer as ``qdyn train``.

Rows are trained one at a time and merged into benchmarks/results/study_water_dimer.json, so
a long study can be run in pieces (``--rows``); the table (benchmarks/README.md section
``study_water_dimer``) and the plot are regenerated from all rows each time.

Usage: python benchmarks/study_water_dimer.py [--quick] [--rows NAME ...] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from _studies import fit, markdown_table, train_config  # noqa: E402

NAME = "study_water_dimer"
DATA = {"path": "shipped:water_dimer"}  # default fractions: 240 / 30 / 30 frames
DIMER = {"family": "sivqlm", "template": "water_dimer"}
MONOMER = {"path": "shipped:H2O", "n_train": 240, "n_val": 30, "n_test": 30}

# label -> (model, training overrides); epochs come from --epochs unless a row sets them
ROWS = {
    "siVQLM defaults (D6 B1 ring)": ({**DIMER}, {}),
    "siVQLM D12 B2 ring": ({**DIMER, "layers": 12, "blocks": 2}, {}),
    "siVQLM D12 B2 all": ({**DIMER, "layers": 12, "blocks": 2, "coupling": "all"}, {}),
    "siVQLM D12 B2 all, no parity avg": ({**DIMER, "layers": 12, "blocks": 2, "coupling": "all",
                                          "parity_average": False}, {}),
    "siVQLM D12 B2 all, force weight 10": ({**DIMER, "layers": 12, "blocks": 2, "coupling": "all"},
                                           {"force_weight": 10.0}),
    "siVQLM D20 B2 all": ({**DIMER, "layers": 20, "blocks": 2, "coupling": "all"}, {}),
    "siVQLM D12 B2 all, lr 0.05": ({**DIMER, "layers": 12, "blocks": 2, "coupling": "all"}, {"lr": 5e-2}),
    "BPNN [32, 32]": ({"family": "bpnn", "hidden": [32, 32]}, {"lr": 1e-2}),
    # Diagnostics on the monomer (shipped:H2O, 240 training frames): the dimer template reads
    # each O–H bond with one qubit (rep 1); does one encoding per bond limit the fit?
    "H2O monomer: siVQLM rep 1 (2 qubits), D12 B2": ({"family": "sivqlm", "template": "H2O", "rep": 1, "layers": 12,
                                                      "blocks": 2}, {"data": MONOMER}),
    "H2O monomer: siVQLM rep 2 (4 qubits), D12 B2": ({"family": "sivqlm", "template": "H2O", "rep": 2, "layers": 12,
                                                      "blocks": 2}, {"data": MONOMER}),
    "hybrid (4 qubits/atom ∥ MLP)": ({"family": "hybrid", "n_qubits": 4, "layers": 3, "hidden": [16, 16]}, {}),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60, help="training epochs per row")
    ap.add_argument("--rows", nargs="*", help="only rows whose label starts with one of these (merged into the "
                    "existing results)")
    ap.add_argument("--quick", action="store_true", help="2 epochs of the default row only, 24 frames (smoke run)")
    ap.add_argument("--out", type=Path, default=Path("runs/study_water_dimer"), help="run directories")
    ap.add_argument("--report-only", action="store_true", help="rewrite table and plot from the saved results")
    args = ap.parse_args()
    if args.quick:
        row = fit(train_config(DIMER, {**DATA, "n_train": 16, "n_val": 4, "n_test": 4}, epochs=2),
                  args.out / "quick")
        print(f"quick: E MAE {row['energy_mae_meV']:.1f} meV, F MAE {row['force_mae_meV_per_A']:.1f} meV/Å")
        return
    path = RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    if args.report_only:
        return write_report(results)
    results.update(machine_info())
    for label, (model, overrides) in ROWS.items():
        if args.rows and not any(label.startswith(r) for r in args.rows):
            continue
        overrides = dict(overrides)
        epochs, data = overrides.pop("epochs", args.epochs), overrides.pop("data", DATA)
        cfg = train_config(model, data, epochs=epochs, **overrides)
        row = fit(cfg, args.out / _slug(label))
        row["epochs"] = epochs
        results["runs"][label] = row
        print(f"{label:40s} params {row['n_params']:5d}  E MAE {row['energy_mae_meV']:7.2f} meV  "
              f"F MAE {row['force_mae_meV_per_A']:7.1f} meV/Å  {row['train_seconds']:6.0f} s  load {row['load']}",
              flush=True)
        save(NAME, results)
    write_report(results)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def write_report(results: dict) -> None:
    runs = results["runs"]
    rows = [[label, r["n_params"], r["epochs"], f"{r['energy_mae_meV']:.1f}", f"{r['force_mae_meV_per_A']:.0f}",
             f"{r['energy_rmse_meV']:.1f}", f"{r['force_rmse_meV_per_A']:.0f}", f"{r['train_seconds']:.0f}",
             r["load"][0]] for label, r in runs.items()]
    header = ["model", "parameters", "epochs", "E MAE [meV]", "F MAE [meV/Å]", "E RMSE [meV]", "F RMSE [meV/Å]",
              "wall [s]", "load (1 min)"]
    text = (f"`python benchmarks/study_water_dimer.py` on {results['date']}, {results['machine']['cpu']} "
            f"({results['machine']['cores']} cores, shared: load in the last column), jax "
            f"{results['versions']['jax']}, float64. shipped:water_dimer (B3LYP/def2-SVP, 300 frames; split seed 0, "
            "240/30/30), test-set errors (the two monomer rows: shipped:H2O, 240/30/30); dimer data spread: E std 210 meV, mean |F| 770 meV/Å. Adam, cosine decay, "
            "E + F loss, staged training for models with a circuit, batch 32, init seed 0.\n\n"
            + markdown_table(header, rows) + "\n\n![dimer](results/study_water_dimer.png)")
    update_readme_section(NAME, "### Water dimer: siVQLM template and training choices", text)
    plot(runs)


def plot(runs: dict) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 1.5), sharey=True)
    for ax, key, unit in zip(axes, ("energy_mae_meV", "force_mae_meV_per_A"), ("meV", "meV/Å")):
        ax.barh(labels, [runs[k][key] for k in labels], color=["C0" if "siVQLM" in k else "C1" for k in labels])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decade labels only
        ax.set_xlabel(f"test MAE [{unit}]")
        ax.invert_yaxis() if ax is axes[0] else None
    axes[1].axvline(3 * min(runs[k]["force_mae_meV_per_A"] for k in labels if k.startswith("BPNN")),
                    color="k", ls="--", label="3 × BPNN") if any(k.startswith("BPNN") for k in labels) else None
    axes[1].legend(loc="lower right") if any(k.startswith("BPNN") for k in labels) else None
    fig.suptitle("Water dimer (shipped data), test errors")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
