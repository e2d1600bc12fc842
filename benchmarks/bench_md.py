"""MD throughput: molecule-steps per second of the compiled JAX-MD loop for 1, 64 and 1024
replicas of H2O with the siVQLM, against ASE's VelocityVerlet driving the qdyn ASE
calculator on one molecule with the same model; compile time of the MD block.

Usage: python benchmarks/bench_md.py [--quick] [--run RUN_DIR] [--steps N] [--readme]
  --run: a trained H2O run (default: runs/accuracy/H2O/siVQLM, made by accuracy.py; refused
         without one, except with --quick, which runs a freshly initialised siVQLM, D=6).
  --readme: only rewrite the bench_md section of benchmarks/README.md from the saved JSON.
Writes benchmarks/results/bench_md.json (bench_md_quick.json with --quick) and, without
--quick, the bench_md section of benchmarks/README.md.

Targets (issue 5): cost per molecule-step at 1024 replicas ≤ 1/50 of one replica's; the
batched loop at 1024 replicas ≥ 10× ASE's molecule-steps/s; the in-JAX loop at 1 replica
faster than the ASE path.
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

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import md  # noqa: E402
from qdyn.structures import water  # noqa: E402

TARGET_COST_RATIO = 50  # cost per molecule-step at the most replicas ≤ 1/50 of one replica's
TARGET_VS_ASE = 10  # the most replicas ≥ 10× ASE's molecule-steps/s


def load_model(run: str | None, *, quick: bool):
    """(model, params, source): the trained run given or the default one; a freshly initialised
    siVQLM only for --quick, since its MD pulls atoms together and the ASE comparison's
    calculator then refuses the positions (overlapping atoms), ending the run."""
    from qdyn.models import sivqlm
    from qdyn.train import load_run

    default = Path("runs/accuracy/H2O/siVQLM")
    if run is None and (default / "model.json").exists():
        run = str(default)
    if run is not None:
        model, params, _ = load_run(run)
        return model, params, run
    if not quick:
        raise SystemExit(f"bench_md: no trained H2O run at {default}; make it with `python benchmarks/accuracy.py` "
                         "or pass --run DIR (an untrained model's MD collapses atoms; --quick runs with one)")
    model = sivqlm.build("H2O", layers=6)
    return model, model.init(jax.random.PRNGKey(0)), "fresh siVQLM H2O (D=6)"


def bench_jax(model, params, replicas: int, steps: int, dt_fs: float, mesh=None) -> dict:
    """One NVE run of ``replicas`` water molecules (split over ``mesh`` when given), then a
    second identical one whose loop time is the steady state (its block is already compiled)."""
    R, system = water()
    settings = md.MDSettings(ensemble="nve", dt_fs=dt_fs, n_steps=steps, temperature_K=300.0, replicas=replicas,
                             remove_rotation=True, max_temperature_K=1e9)
    output = md.MDOutput(stride=10, frames_per_block=10, progress=None)
    energy_fn = md.model_energy_fn(model.apply)
    res = md.run_md(energy_fn, params, R, system, settings, output=output, mesh=mesh)
    res2 = md.run_md(energy_fn, params, R, system, settings, output=output, key=jax.random.PRNGKey(1), mesh=mesh)
    t = min(res.timings["run_s"], res2.timings["run_s"])
    return {"replicas": replicas, "steps": steps, "compile_s": res.timings["compile_s"], "run_s": t,
            "molecule_steps_per_s": steps * replicas / t, "us_per_molecule_step": 1e6 * t / (steps * replicas),
            "ns_per_day": steps * dt_fs * 1e-6 / (t / 86400.0),
            "max_rel_energy_error": float(np.max(np.abs(res.total - res.total[0]))),
            "mean_temperature_K": float(res.temperature.mean())}


def bench_ase(model, params, steps: int, dt_fs: float) -> dict:
    from ase import Atoms
    from ase import units as ase_units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from qdyn.md.ase_calculator import QdynCalculator

    R, system = water()
    atoms = Atoms(numbers=np.asarray(system.species), positions=R)
    atoms.calc = QdynCalculator(model, params)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=dt_fs * ase_units.fs)
    t0 = time.perf_counter()
    dyn.run(5)  # compile the calculator's energy+forces once
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    dyn.run(steps)
    t = time.perf_counter() - t0
    return {"steps": steps, "warmup_s": warm, "run_s": t, "molecule_steps_per_s": steps / t,
            "us_per_molecule_step": 1e6 * t / steps}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _us(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def readme_section(payload: dict) -> str:
    """The bench_md section of benchmarks/README.md (below its header) from bench_md.json."""
    rows, ase = payload["jax_md"], payload["ase"]
    one, big = rows[0], rows[-1]
    table = ["| replicas | molecule-steps/s | µs per molecule-step | compile |", "|---:|---:|---:|---:|"]
    table += [f"| {r['replicas']} | {r['molecule_steps_per_s']:,.0f} | {_us(r['us_per_molecule_step'])} "
              f"| {r['compile_s']:.1f} s |" for r in rows]
    table.append(f"| ASE VelocityVerlet + QdynCalculator, 1 molecule | {ase['molecule_steps_per_s']:,.0f} "
                 f"| {_us(ase['us_per_molecule_step'])} | — |")
    vs_ase, one_vs_ase = payload["speedup_vs_ase"], one["molecule_steps_per_s"] / ase["molecule_steps_per_s"]
    ratio = one["us_per_molecule_step"] / big["us_per_molecule_step"]
    backend = payload["machine"]["jax_backend"].upper()
    lines = [f"- {big['replicas']} replicas vs ASE: {vs_ase:.0f}× (target ≥ {TARGET_VS_ASE}×: "
             f"{_met(vs_ase >= TARGET_VS_ASE)}); 1 replica in JAX vs ASE: {one_vs_ase:.1f}× "
             f"(target > 1×: {_met(one_vs_ase > 1)}).",
             f"- Cost per molecule-step at {big['replicas']} replicas is 1/{ratio:.1f} of one replica's "
             f"(target 1/{TARGET_COST_RATIO}: {_met(ratio >= TARGET_COST_RATIO)} on this {backend})."]
    if ratio < TARGET_COST_RATIO:
        lines[-1] += (f" At {big['replicas']} the loop is the batched circuit's energy+forces; one replica is bound "
                      f"by per-op overhead inside `lax.scan`. Reaching 1/{TARGET_COST_RATIO} needs "
                      f"~{one['us_per_molecule_step'] / TARGET_COST_RATIO:.1f} µs per molecule-step — an "
                      "accelerator's regime.")
    return "\n".join(table) + "\n\n" + "\n".join(lines)


def write_readme(payload: dict) -> None:
    one, m = payload["jax_md"][0], payload["machine"]
    params = f", {payload['n_params']} parameters" if "n_params" in payload else ""
    header = (f"MD throughput of the compiled JAX-MD loop (NVE, {payload['dt_fs']:g} fs, "
              f"{'float64' if payload['x64'] else 'float32'}) with {payload['model']} (`{payload['source']}`{params}), "
              f"{one['steps']} steps per replica count, measured {payload['date']} on {m['cpu']} ({m['cores']} cores, "
              f"{m['jax_backend']}); `results/bench_md.json`:")
    update_readme_section("bench_md", header, readme_section(payload))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few steps, 1/16/64 replicas (smoke run, ~1 min)")
    ap.add_argument("--run", default=None, help="trained H2O run directory")
    ap.add_argument("--steps", type=int, default=None, help="steps per replica count (default 1000; quick 100)")
    ap.add_argument("--readme", action="store_true", help="only rewrite the README section from bench_md.json")
    args = ap.parse_args()
    if args.readme:
        write_readme(json.loads((RESULTS / "bench_md.json").read_text()))
        return
    steps = args.steps or (100 if args.quick else 1000)
    replica_counts = (1, 16, 64) if args.quick else (1, 64, 1024)
    dt_fs = 0.5
    model, params, source = load_model(args.run, quick=args.quick)
    print(f"model: {model.name} from {source}; {steps} steps of {dt_fs} fs; float64; {jax.default_backend()}")
    rows = []
    for r in replica_counts:
        row = bench_jax(model, params, r, steps, dt_fs)
        rows.append(row)
        print(f"  JAX-MD  {r:5d} replicas: {row['molecule_steps_per_s']:10.0f} molecule-steps/s "
              f"({row['us_per_molecule_step']:8.1f} µs each), compile {row['compile_s']:.1f} s, "
              f"{row['ns_per_day']:.1f} ns/day per replica")
    ase_row = bench_ase(model, params, max(steps // 2, 20), dt_fs)
    print(f"  ASE VelocityVerlet, 1 molecule: {ase_row['molecule_steps_per_s']:10.0f} molecule-steps/s "
          f"({ase_row['us_per_molecule_step']:.1f} µs each)")
    one, big = rows[0], rows[-1]
    checks = {
        f"cost per molecule-step at {big['replicas']} ≤ 1/{TARGET_COST_RATIO} of 1 replica":
            big["us_per_molecule_step"] <= one["us_per_molecule_step"] / TARGET_COST_RATIO,
        f"{big['replicas']} replicas ≥ {TARGET_VS_ASE}× ASE molecule-steps/s":
            big["molecule_steps_per_s"] >= TARGET_VS_ASE * ase_row["molecule_steps_per_s"],
        "1 replica in JAX faster than ASE": one["molecule_steps_per_s"] > ase_row["molecule_steps_per_s"],
    }
    for k, v in checks.items():
        print(f"  [{'pass' if v else 'FAIL'}] {k}")
    n_params = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
    payload = {**machine_info(), "model": model.name, "source": source, "n_params": n_params, "dt_fs": dt_fs,
               "jax_md": rows,
               "ase": ase_row, "checks": checks,
               "speedup_per_molecule_step_vs_single": one["us_per_molecule_step"] / big["us_per_molecule_step"],
               "speedup_vs_ase": big["molecule_steps_per_s"] / ase_row["molecule_steps_per_s"]}
    path = save("bench_md_quick" if args.quick else "bench_md", payload)
    if not args.quick:
        write_readme(payload)
    print(f"wrote {path.relative_to(RESULTS.parent.parent) if path.is_relative_to(RESULTS.parent.parent) else path}")


if __name__ == "__main__":
    main()
