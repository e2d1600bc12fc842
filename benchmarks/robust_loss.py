"""Gross label errors: the squared vs the Huber residual penalty (``loss.residual``), siVQLM on H2O.

A fraction of the frames the trainer is given carry a wrong label, as an unconverged SCF or a
frame labelled at the wrong geometry would: energy off by ±``--shift`` eV and forces replaced
by those of another frame. The same model, split, epochs and optimiser are trained with
``residual: squared``, with ``residual: huber`` (δ = ``--delta`` in units of the data's σ),
and with Huber on robust scales (``scales: robust``: σ from medians, which the corrupted
labels cannot inflate), for several initialisation seeds, and evaluated on the clean labels of the test frames
(the trainer's own split of the clean data, as study_noisy_labels.py does). Clean data
(fraction 0) is the control: there Huber should cost nothing.

Usage: python benchmarks/robust_loss.py [--epochs 300] [--fractions 0 0.05 0.1] [--seeds 0 1 2] [--readme]
Writes results/robust_loss.json and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, mean_and_range, save, update_readme_section  # noqa: E402
from _studies import fit_result, train_config  # noqa: E402
from qdyn.data.shipped import load_shipped  # noqa: E402
from qdyn.train import parse_config  # noqa: E402
from qdyn.train.trainer import evaluate, split_data  # noqa: E402

NAME = "robust_loss"
DATA = {"path": "shipped:H2O", "n_train": 400, "n_val": 50, "n_test": 50}
MODEL = {"family": "sivqlm", "template": "H2O", "layers": 6}


def with_gross_errors(ds, fraction: float, shift_eV: float, *, seed: int = 0):
    """A copy of ``ds`` in which ``fraction`` of the frames have E off by ±shift_eV and the
    forces of another frame; returns (dataset, indices of the corrupted frames)."""
    rng = np.random.default_rng(seed)
    bad = np.sort(rng.choice(ds.n_frames, size=int(round(fraction * ds.n_frames)), replace=False))
    E, F = ds.E.copy(), ds.F.copy()
    E[bad] += shift_eV * rng.choice([-1.0, 1.0], size=len(bad))
    F[bad] = ds.F[rng.permutation(bad)] if len(bad) > 1 else F[bad]
    return dataclasses.replace(ds, E=E, F=F), bad


def run(args) -> dict:
    clean = load_shipped("H2O")
    clean_test = split_data(clean, parse_config({"data": DATA}).data)[2]
    rows = []
    for fraction in args.fractions:
        data, bad = with_gross_errors(clean, fraction, args.shift)
        for residual, scales in (("squared", "spread"), ("huber", "spread"), ("huber", "robust")):
            for seed in args.seeds:
                cfg = train_config(MODEL, DATA, epochs=args.epochs, seed=seed)
                cfg["loss"].update(residual=residual, huber_delta=args.delta, scales=scales)
                out = Path(args.runs) / f"f{fraction:g}_{residual}_{scales}_seed{seed}"
                row, res = fit_result(cfg, out, dataset=data)
                test = evaluate(res.model, res.params, clean_test)
                row.update(fraction=fraction, n_corrupted=int(len(bad)), residual=residual, scales=scales, seed=seed,
                           clean_energy_mae_meV=test["energy_mae_meV"],
                           clean_force_mae_meV_per_A=test["force_mae_meV_per_A"])
                del row["config"]
                rows.append(row)
                print(f"f={fraction:g} {residual:8s} {scales:7s} seed {seed}: clean test E MAE {row['clean_energy_mae_meV']:.2f} meV, "
                      f"F MAE {row['clean_force_mae_meV_per_A']:.1f} meV/Å ({row['train_seconds']:.0f} s)", flush=True)
    return {**machine_info(), "epochs": args.epochs, "shift_eV": args.shift, "huber_delta": args.delta,
            "model": MODEL, "data": DATA, "rows": rows}


def readme_text(payload: dict) -> str:
    lines = ["| corrupted frames | residual | σ_E, σ_F | clean test E MAE [meV] | clean test F MAE [meV/Å] |",
             "|---|---|---|---|---|"]
    groups: dict = {}
    for r in payload["rows"]:
        groups.setdefault((r["fraction"], r["residual"], r.get("scales", "spread")), []).append(r)
    for (fraction, residual, scales), rows in groups.items():
        lines.append(f"| {fraction:.0%} ({rows[0]['n_corrupted']}) | {residual} | {scales} | "
                     f"{mean_and_range([r['clean_energy_mae_meV'] for r in rows], '.2f')} | "
                     f"{mean_and_range([r['clean_force_mae_meV_per_A'] for r in rows], '.1f')} |")
    seeds = sorted({r["seed"] for r in payload["rows"]})
    lines += ["", f"Mean (min–max) over seeds {', '.join(map(str, seeds))}. A corrupted frame has its energy off by "
              f"±{payload['shift_eV']:g} eV and the forces of another corrupted frame; the fraction is of all "
              "frames the trainer is given (training and validation splits); test errors on the clean labels."]
    return "\n".join(lines)


def write_readme(payload: dict) -> None:
    m = payload["machine"]
    header = (f"`python benchmarks/robust_loss.py` (made {payload['date'][:10]} on {m['cpu']}, {m['cores']} cores; "
              f"results/robust_loss.json): siVQLM[H2O] D = 6, shipped:H2O 400/50/50, {payload['epochs']} epochs; "
              f"`loss.residual` squared vs huber (δ = {payload['huber_delta']:g} σ), `loss.scales` spread vs robust "
              "(docs/training.md).")
    update_readme_section(NAME, header, readme_text(payload))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.05, 0.1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shift", type=float, default=1.0, help="energy error of a corrupted frame [eV]")
    ap.add_argument("--delta", type=float, default=1.0, help="huber_delta [σ]")
    ap.add_argument("--runs", default="runs/robust_loss")
    ap.add_argument("--readme", action="store_true", help="only rewrite the README section from the JSON")
    args = ap.parse_args()
    if args.readme:
        write_readme(json.loads((RESULTS / f"{NAME}.json").read_text()))
        return
    payload = run(args)
    save(NAME, payload)
    write_readme(payload)
    print(readme_text(payload))


if __name__ == "__main__":
    main()
