"""Accuracy table: siVQLM vs generic QNN vs BP-network baseline on the shipped data.

Fixed seeds; equal parameter budgets for the three "budget" models (the generic control
gets the same number of parameters as the invariant model, not fewer); plus one larger
classical network for the accuracy target. Writes benchmarks/results/accuracy.json and
benchmarks/accuracy.md (with the command that made it).

Usage: python benchmarks/accuracy.py [--epochs N] [--only H2O|LiH] [--quick]
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

from _common import RESULTS, machine_info  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402

SYSTEMS = {
    "H2O": {"data": {"path": "shipped:H2O", "n_train": 400, "n_val": 50, "n_test": 50}, "template": "H2O"},
    "LiH": {"data": {"path": "shipped:LiH", "n_train": 140, "n_val": 20, "n_test": 40}, "template": "LiH"},
}


def models(template: str):
    if template == "H2O":
        # 131 parameters each: siVQLM D=16, B=2 (α 16×2, J 16×2×3, scale, 2 shifts);
        # generic D=8 (a 8×4, Rot 8×4×3, scale, 2 shifts); BPNN hidden [2] per element.
        return {
            "siVQLM": {"family": "sivqlm", "template": "H2O", "layers": 16, "blocks": 2},
            "generic QNN": {"family": "generic", "template": "H2O", "layers": 8},
            "BPNN (equal budget)": {"family": "bpnn", "hidden": [2]},
            "BPNN (large)": {"family": "bpnn", "hidden": [32, 32]},
            "hybrid (4 qubits/atom ∥ MLP)": {"family": "hybrid", "n_qubits": 4, "layers": 3, "hidden": [16, 16]},
        }
    # LiH, 2 qubits, 67 parameters: siVQLM D=16, B=2 (α 16×2, J 16×2, scale, 2 shifts);
    # generic D=8 (a 8×2, Rot 8×2×3, +3); BPNN hidden [1] on 2×14 radial features (65).
    # One neighbour per atom: angular terms vanish, so LiH's networks use radial ones only.
    return {
        "siVQLM": {"family": "sivqlm", "template": "LiH", "layers": 16, "blocks": 2},
        "generic QNN": {"family": "generic", "template": "LiH", "layers": 8},
        "BPNN (equal budget)": {"family": "bpnn", "hidden": [1], "n_radial": 14, "zetas": []},
        "BPNN (large)": {"family": "bpnn", "hidden": [32, 32], "n_radial": 16, "zetas": []},
        "hybrid (4 qubits/atom ∥ MLP)": {"family": "hybrid", "n_qubits": 4, "layers": 3, "hidden": [16, 16],
                                         "n_radial": 16, "zetas": []},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--only", choices=list(SYSTEMS))
    ap.add_argument("--quick", action="store_true", help="5 epochs (smoke run)")
    ap.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    ap.add_argument("--models", nargs="*", help="only these rows (labels start with these words); merged into "
                    "the existing results")
    args = ap.parse_args()
    epochs = 5 if args.quick else args.epochs
    results = {"epochs": epochs, "runs": {}, **machine_info()}
    previous = RESULTS / "accuracy.json"
    if args.models and previous.exists() and not args.quick:
        old = json.loads(previous.read_text())
        if old.get("epochs") != epochs:
            raise SystemExit(f"existing results used {old.get('epochs')} epochs; rerun everything or match it")
        results["runs"] = old["runs"]
    for name, spec in SYSTEMS.items():
        if args.only and name != args.only:
            continue
        for label, model in models(spec["template"]).items():
            if args.models and not any(label.startswith(m) for m in args.models):
                continue
            quantum = model["family"] in ("sivqlm", "generic", "hybrid")
            cfg = parse_config({
                "model": model, "data": spec["data"], "epochs": epochs, "batch_size": 32, "seed": 0,
                "optim": {"learning_rate": 2e-2 if quantum else 1e-2, "schedule": "cosine", "final_lr_fraction": 0.01},
                "loss": {"energy_weight": 1.0, "force_weight": 1.0},
                "staged": quantum, "pretrain_epochs": max(1, epochs // 10) if quantum else 0,
                "checkpoint_every": max(1, epochs // 4),
            })
            t0 = time.perf_counter()
            res = train(cfg, args.out / name / label.replace(" ", "_").replace("(", "").replace(")", ""),
                        progress=False)
            dt = time.perf_counter() - t0
            m = res.metrics["test"]
            row = {"n_params": res.metrics["n_params"], "train_seconds": dt,
                   "energy_mae_meV": m["energy_mae_meV"], "force_mae_meV_per_A": m["force_mae_meV_per_A"],
                   "energy_rmse_meV": m["energy_rmse_meV"], "force_rmse_meV_per_A": m["force_rmse_meV_per_A"],
                   "config": cfg.model_dump(mode="json")}
            results["runs"].setdefault(name, {})[label] = row
            print(f"{name:4s} {label:22s} params {row['n_params']:6d}  E MAE {row['energy_mae_meV']:8.2f} meV  "
                  f"F MAE {row['force_mae_meV_per_A']:8.1f} meV/Å  {dt:7.1f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("accuracy_quick.json" if args.quick else "accuracy.json")).write_text(json.dumps(results, indent=2))
    if not args.quick:
        write_md(results, " ".join(sys.argv[1:]))


def _kept_notes() -> str:
    """Hand-written observations below the tables survive a re-run."""
    path = Path(__file__).parent / "accuracy.md"
    if not path.exists():
        return ""
    text = path.read_text()
    i = text.find("## Observations")
    return text[i:] if i >= 0 else ""


def write_md(results, argv):
    lines = ["# Accuracy on the shipped data", "",
             f"Made by `python benchmarks/accuracy.py --epochs {results['epochs']}` (all rows; `--models NAME` "
             f"re-runs some rows and merges them) on {results['date']}, "
             f"{results['machine']['cpu']} ({results['machine']['cores']} cores), jax {results['versions']['jax']}, float64.",
             f"Seeds fixed (split seed 0, init seed 0); {results['epochs']} epochs, batch 32, Adam with cosine decay, "
             "E + F loss (each normalised by its data scale), staged training (classical part first) for the quantum models.",
             "Test-set errors on total energies (eV → meV) and force components.", ""]
    for name, runs in results["runs"].items():
        lines += [f"## {name}", "", "| model | parameters | energy MAE [meV] | force MAE [meV/Å] | energy RMSE [meV] | force RMSE [meV/Å] | training time [s] |",
                  "|---|---|---|---|---|---|---|"]
        for label, r in runs.items():
            lines.append(f"| {label} | {r['n_params']} | {r['energy_mae_meV']:.2f} | {r['force_mae_meV_per_A']:.1f} | "
                         f"{r['energy_rmse_meV']:.2f} | {r['force_rmse_meV_per_A']:.1f} | {r['train_seconds']:.0f} |")
        lines.append("")
    notes = _kept_notes()
    (Path(__file__).parent / "accuracy.md").write_text("\n".join(lines) + "\n" + notes)


if __name__ == "__main__":
    main()
