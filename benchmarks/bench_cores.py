"""Issue 18's per-sample targets on every core: the H2O siVQLM's energies, energies + forces,
train step and 1024-replica MD with the batch (the replicas) split over one CPU device per
core, against one device.

JAX's CPU backend is a single device by default, and qdyn's small circuit kernels then run on
one core. ``qdyn.parallel.use_cpu_cores(N)`` (what the CLI's ``--devices N`` does on a CPU-only
machine) gives the backend N devices, and the mesh of ``qdyn.parallel`` splits a batch over
them: the same jitted program, partitioned by XLA. The device count is fixed when JAX starts,
so every configuration runs in its own process; the sequence 1, N, 1, N is run and each
number is the minimum over both processes of a configuration (other load only adds time).

Same model as ``bench_circuits.py`` (4 qubits, D = 6, float64, fresh parameters) and its E
and E+F tasks (the batch split by GSPMD, as MD splits replicas); the train step is the
trainer's (E + F loss on shipped H2O frames, the model evaluated per device:
``qdyn.parallel.split_batch``); MD as ``bench_md.py`` (NVE, 0.5 fs).

Usage: python benchmarks/bench_cores.py [--devices N] [--batches 256 1024] [--md-steps 1000] [--readme]
Writes benchmarks/results/bench_cores.json and its section of benchmarks/README.md. The JSON
keeps a summary of the runs before (``earlier``, newest last): the hosts this runs on change
between sessions (an Intel Xeon and an AMD EPYC so far, both two cores) and differ by up to 3x,
so a number means little without the machine it came from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import update_readme_section  # noqa: E402

TARGETS_US = {"energies+forces": 4.0, "train step": 15.0, "md": 10.0}  # issue 18, per sample / molecule-step
TASKS = ("energies", "energies+forces", "train step")
SUMMARY_KEYS = ("energies+forces@256", "train step@256", "energies+forces@1024", "train step@1024")
KEEP_EARLIER = 12


def steady_state(fn, args, *, min_calls: int = 20, min_time: float = 2.0) -> float:
    """Seconds per call of a compiled ``fn``: the minimum over repeated calls."""
    import jax

    jax.block_until_ready(fn(*args))
    times, start = [], time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - start < min_time and len(times) < 400):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def train_step_task(model, params, batch_size: int, mesh):
    """The trainer's step (its E + F loss, the model evaluated per device on a mesh, adam
    through qdyn's optimiser) on ``batch_size`` shipped H2O frames: ``(step, args)``."""
    import jax
    import numpy as np

    from qdyn import parallel
    from qdyn.data import load_shipped
    from qdyn.train.batches import make_batch
    from qdyn.train.config import OptimConfig
    from qdyn.train.losses import make_loss_fn
    from qdyn.train.optim import make_optimizer

    ds = load_shipped("H2O")
    batch = make_batch(ds, np.arange(batch_size) % ds.n_frames, batch_size)
    loss = make_loss_fn(model.apply, sigma_E=0.01, sigma_F=1.0, mesh=mesh)
    tx = make_optimizer(OptimConfig(), model.param_labels(params), trainable={"quantum", "classical"})

    def step(p, s, b):
        (val, _), g = jax.value_and_grad(loss, has_aux=True)(p, b, 1.0, 1.0, 0.0)
        u, s = tx.update(g, s, p, value=val)
        return jax.tree_util.tree_map(lambda a, c: a + OptimConfig().learning_rate * c, p, u), s, val  # unit-rate tx

    return step, (*parallel.put_replicated((params, tx.init(params)), mesh), parallel.put_sharded(batch, mesh))


def worker(n_devices: int, batches, md_replicas: int, md_steps: int) -> dict:
    """Everything measured in this process, with ``n_devices`` CPU devices (1: JAX's default)."""
    from qdyn import enable_x64, parallel

    if n_devices > 1 and not parallel.use_cpu_cores(n_devices):
        raise SystemExit("could not set the CPU device count (JAX had started, or XLA_FLAGS forces a count)")
    enable_x64()
    import jax

    from bench_circuits import tasks
    from bench_md import bench_jax
    from qdyn.models import sivqlm

    mesh = parallel.make_mesh(n_devices) if n_devices > 1 else None
    model = sivqlm.build("H2O", rep=2, layers=6, blocks=1)
    params = model.init(jax.random.PRNGKey(0))
    out = {"devices": len(jax.devices()), "circuits": {}}
    for batch in batches:
        work = {name: (fn, (*parallel.put_replicated(args[:-1], mesh), parallel.put_sharded(args[-1], mesh)))
                for name, (fn, args) in tasks(model, params, batch).items() if name != "train step"}
        work["train step"] = train_step_task(model, params, batch, mesh)
        for name, (fn, args) in work.items():
            t0 = time.perf_counter()
            compiled = jax.jit(fn).lower(*args).compile()
            compile_s = time.perf_counter() - t0
            per_call = steady_state(compiled, args)
            out["circuits"][f"{name}@{batch}"] = {"compile_s": compile_s, "us_per_sample": 1e6 * per_call / batch}
            print(f"  [{n_devices} device(s)] {name:16s} batch {batch:5d}: {1e6 * per_call / batch:7.2f} µs/sample "
                  f"(compile {compile_s:.1f} s)", file=sys.stderr, flush=True)
    row = bench_jax(model, params, md_replicas, md_steps, 0.5, mesh=mesh)
    out["md"] = {"replicas": md_replicas, "steps": md_steps, "us_per_molecule_step": row["us_per_molecule_step"],
                 "compile_s": row["compile_s"], "max_energy_drift_eV": row["max_rel_energy_error"]}
    print(f"  [{n_devices} device(s)] MD {md_replicas} replicas: {row['us_per_molecule_step']:.2f} µs per "
          "molecule-step", file=sys.stderr, flush=True)
    return out


def run_worker(n_devices: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(n_devices), "--batches", *map(str, args.batches),
           "--md-replicas", str(args.md_replicas), "--md-steps", str(args.md_steps)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """Per number, the minimum over the processes of one configuration."""
    first = runs[0]
    circuits = {k: {f: min(r["circuits"][k][f] for r in runs) for f in ("compile_s", "us_per_sample")}
                for k in first["circuits"]}
    md = dict(first["md"], us_per_molecule_step=min(r["md"]["us_per_molecule_step"] for r in runs))
    return {"devices": first["devices"], "circuits": circuits, "md": md}


def _met(value: float, target: float) -> str:
    return "met" if value <= target else "**not met**"


def readme_text(payload: dict) -> str:
    one, many = payload["one_device"], payload["all_cores"]
    n = many["devices"]
    lines = [f"| quantity | target | 1 device | {n} devices (one per core) | speed-up | target on {n} cores |",
             "|---|---|---|---|---|---|"]
    for key in one["circuits"]:
        name, batch = key.split("@")
        a, b = one["circuits"][key]["us_per_sample"], many["circuits"][key]["us_per_sample"]
        target = TARGETS_US.get(name)
        lines.append(f"| {name}, batch {batch} [µs/sample] | {f'≤ {target:g}' if target else '–'} | {a:.2f} | {b:.2f} "
                     f"| {a / b:.2f}× | {_met(b, target) if target else '–'} |")
    a, b = one["md"]["us_per_molecule_step"], many["md"]["us_per_molecule_step"]
    lines.append(f"| MD, {one['md']['replicas']} replicas [µs/molecule-step] | ≤ {TARGETS_US['md']:g} | {a:.2f} | "
                 f"{b:.2f} | {a / b:.2f}× | {_met(b, TARGETS_US['md'])} |")
    spread = "; ".join(f"{k} device(s): " + ", ".join(f"{r['md']['us_per_molecule_step']:.2f}" for r in runs)
                       for k, runs in payload["runs"].items())
    lines += ["", f"Each process's MD number (µs per molecule-step), to show the spread behind the minimum: {spread}."]
    return "\n".join(lines)


def summary(payload: dict) -> dict:
    """One run in a line: date, CPU, and the targets' quantities on one device and on all cores."""
    def numbers(side):
        out = {k: side["circuits"][k]["us_per_sample"] for k in SUMMARY_KEYS if k in side["circuits"]}
        return dict(out, md=side["md"]["us_per_molecule_step"])

    return {"date": payload["date"], "cpu": payload["machine"]["cpu"], "cores": payload["machine"]["cores"],
            "devices": payload["all_cores"]["devices"], "one_device": numbers(payload["one_device"]),
            "all_cores": numbers(payload["all_cores"])}


def with_earlier(payload: dict, previous: dict | None) -> dict:
    """``payload`` with the summaries of the runs before it (``previous``'s own and its earlier ones)."""
    earlier = [] if previous is None else [*previous.get("earlier", []), summary(previous)]
    return dict(payload, earlier=earlier[-KEEP_EARLIER:])


def earlier_text(payload: dict) -> str:
    """Every run kept, this one last: the all-cores numbers against the targets, per machine."""
    runs = [*payload.get("earlier", []), summary(payload)]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| date | CPU (cores) | E+F 256 | train 256 | E+F 1024 | train 1024 | MD 1024 |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        a = r["all_cores"]
        lines.append(f"| {r['date'][:16]} | {r['cpu']} ({r['cores']}) | "
                     + " | ".join(fmt(a.get(k)) for k in (*SUMMARY_KEYS, "md")) + " |")
    return "\n".join(lines)


def write_readme(payload: dict) -> None:
    update_readme_section(
        "bench_cores",
        f"The batch split over one CPU device per core (`qdyn.parallel.use_cpu_cores`, the CLI's `--devices`), "
        f"measured {payload['date']} on {payload['machine']['cpu']} ({payload['machine']['cores']} cores), float64, "
        f"H2O siVQLM (4 qubits, D = 6); minimum over two processes per configuration; MD: NVE, 0.5 fs, "
        f"{payload['md_steps']} steps:",
        readme_text(payload) + "\n\nEvery run of this script kept in the JSON (µs per sample or molecule-step on all "
        f"cores; targets ≤ {TARGETS_US['energies+forces']:g}, ≤ {TARGETS_US['train step']:g}, ≤ {TARGETS_US['md']:g}). "
        "Rows differ in code (optimisations landed between them) and in host, which changes between sessions; "
        "compare rows of one CPU:\n\n" + earlier_text(payload))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=None, help="CPU devices of the split runs (default: every core)")
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024], help="circuit batch sizes")
    ap.add_argument("--md-replicas", type=int, default=1024)
    ap.add_argument("--md-steps", type=int, default=1000)
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--readme", action="store_true", help="only rewrite the README section from bench_cores.json")
    args = ap.parse_args()
    if args.readme:
        from _common import RESULTS

        write_readme(json.loads((RESULTS / "bench_cores.json").read_text()))
        return
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.batches, args.md_replicas, args.md_steps)))
        return
    from qdyn import parallel

    n = args.devices or parallel.cpu_cores()
    runs = {1: [], n: []}
    for _ in range(2):
        for d in (1, n):
            print(f"process with {d} CPU device(s)", flush=True)
            runs[d].append(run_worker(d, args))
    from _common import RESULTS, machine_info, save

    info = machine_info()
    previous_path = RESULTS / "bench_cores.json"
    previous = json.loads(previous_path.read_text()) if previous_path.exists() else None
    payload = {**info, "model": "siVQLM H2O (4 qubits, D=6), fresh parameters", "float": "float64",
               "batches": args.batches, "md_steps": args.md_steps, "one_device": best_of(runs[1]),
               "all_cores": best_of(runs[n]), "runs": {str(k): v for k, v in runs.items()}}
    payload = with_earlier(payload, previous)
    print(readme_text(payload))
    save("bench_cores", payload)
    write_readme(payload)

if __name__ == "__main__":
    main()
