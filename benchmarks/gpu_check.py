"""One-shot accelerator check: circuits, training, MD (1 … 8192 replicas) and FSSH in one
process, within a time budget, into ONE JSON with the device, versions and every number.

Run by benchmarks/gpu_check.sh (which installs qdyn with the ``cuda`` extra first); on CPU
``--cpu-smoke`` runs the same code at tiny sizes to prove the script end to end.

Every section is timed as compile seconds + steady-state seconds (minimum of repeats); a
section that fails records its error and the run goes on; once the budget is spent the
remaining sections are recorded as skipped, so the JSON is always written. The JSON is
rewritten after every section: a run killed by an outer timeout keeps what it finished.

Usage: python benchmarks/gpu_check.py [--cpu-smoke] [--budget-s 450] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from _common import machine_info, time_compiled  # noqa: E402

FULL = {"circuit_batch": 256, "layers": 6, "md_replicas": [1, 64, 1024, 8192], "md_steps": 200,
        "fssh_traj": [1024, 8192], "fssh_steps": 200}
SMOKE = {"circuit_batch": 8, "layers": 2, "md_replicas": [1, 4], "md_steps": 20, "fssh_traj": [16], "fssh_steps": 20}


def device_info() -> dict:
    devs = jax.devices()
    info = {"backend": jax.default_backend(), "count": len(devs), "kinds": sorted({d.device_kind for d in devs}),
            "process_count": jax.process_count()}
    try:
        stats = devs[0].memory_stats() or {}
        info["memory_bytes_limit"] = stats.get("bytes_limit")
    except Exception:  # CPU devices have no memory stats
        pass
    return info


def circuits(sizes) -> dict:
    """siVQLM H2O (4 qubits): energies, energies+forces and an Adam step on one batch."""
    from bench_circuits import tasks
    from qdyn.models import sivqlm

    model = sivqlm.build("H2O", layers=sizes["layers"])
    params = model.init(jax.random.PRNGKey(0))
    batch = sizes["circuit_batch"]
    out = {"batch": batch, "layers": sizes["layers"], "n_qubits": model.config["n_qubits"]}
    for name, (fn, args) in tasks(model, params, batch).items():
        tc, ts = time_compiled(fn, *args, repeats=5, min_time=0.5)
        out[name] = {"compile_s": tc, "run_ms": 1e3 * ts, "us_per_sample": 1e6 * ts / batch}
    return out


def training(sizes, tmp: Path) -> dict:
    """A few epochs of ``qdyn.train.train`` (BPNN and siVQLM on shipped H2O): wall seconds and
    seconds per step after the first epoch (compilation included in the first)."""
    from qdyn.data import load_shipped
    from qdyn.train import parse_config, train

    ds = load_shipped("H2O")
    if sizes is SMOKE:
        ds = ds.subset(np.arange(48))
    out = {}
    for name, model in (("BPNN", {"family": "bpnn", "hidden": [16, 16]}),
                        ("siVQLM", {"family": "sivqlm", "layers": sizes["layers"]})):
        cfg = parse_config({"model": model, "epochs": 3, "batch_size": 32, "checkpoint_every": 3,
                            "devices": "all" if len(jax.devices()) > 1 else 1})
        t = time.perf_counter()
        res = train(cfg, tmp / name, progress=False, data=ds)
        walls = [h["wall_s"] for h in res.history]
        steps_per_epoch = -(-res.metrics["sizes"]["train"] // 32)
        out[name] = {"total_s": time.perf_counter() - t, "first_epoch_s": walls[0],
                     "s_per_step_after_first_epoch": (walls[-1] - walls[0]) / ((len(walls) - 1) * steps_per_epoch),
                     "test_force_mae_meV_per_A": res.metrics["test"]["force_mae_meV_per_A"]}
    return out


def md_scaling(sizes, replicas: int) -> dict:
    """NVE of ``replicas`` H2O molecules with the siVQLM: compile and µs per molecule-step
    (second identical run, compiled block reused); sharded over every device if several."""
    from qdyn import md, parallel
    from qdyn.models import sivqlm
    from qdyn.structures import water

    model = sivqlm.build("H2O", layers=sizes["layers"])
    params = model.init(jax.random.PRNGKey(0))
    energy_fn = md.model_energy_fn(model.apply)
    n_dev = len(jax.devices())
    mesh = parallel.make_mesh("all") if n_dev > 1 and replicas % n_dev == 0 else None
    R, system = water()
    runs = [md.run_md(energy_fn, params, R, system,
                      md.MDSettings(ensemble="nve", dt_fs=0.25, n_steps=sizes["md_steps"], replicas=replicas,
                                    remove_rotation=True, max_temperature_K=1e9),
                      output=md.MDOutput(stride=10, frames_per_block=sizes["md_steps"] // 10, store_replicas=1,
                                         progress=None), key=jax.random.PRNGKey(i), mesh=mesh) for i in range(2)]
    run_s = min(r.timings["run_s"] for r in runs)
    steps = sizes["md_steps"]
    return {"replicas": replicas, "steps": steps, "devices": parallel.mesh_size(mesh),
            "compile_s": runs[0].timings["compile_s"], "run_s": run_s,
            "us_per_molecule_step": 1e6 * run_s / (steps * replicas),
            "max_abs_energy_drift_eV": float(np.max(np.abs(runs[0].total - runs[0].total[:1])))}


def fssh(sizes, n_traj: int) -> dict:
    """Tully model 1, ``n_traj`` trajectories: compile and µs per trajectory-step."""
    from qdyn.namd import run_fssh, tully

    W, p = tully.model(1)
    kw = dict(masses=[tully.MASS_AMU], dt_fs=0.5, n_steps=sizes["fssh_steps"], initial_state=0, replicas=n_traj,
              sampler=tully.sampler(20.0, -8.0), stride=10, frames_per_block=sizes["fssh_steps"] // 10, progress=None)
    t = time.perf_counter()
    run_fssh(W, p, key=jax.random.PRNGKey(0), **kw)
    first = time.perf_counter() - t
    t = time.perf_counter()
    res = run_fssh(W, p, key=jax.random.PRNGKey(1), **kw)
    second = time.perf_counter() - t
    return {"n_traj": n_traj, "steps": sizes["fssh_steps"], "first_run_s": first, "run_s": second,
            "us_per_traj_step": 1e6 * second / (n_traj * sizes["fssh_steps"]),
            "final_active_fraction": res.active_fraction[-1].tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes: prove the script on a CPU")
    ap.add_argument("--budget-s", type=float, default=450.0, help="seconds for all sections (default 450: 7.5 min)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu_check.json")
    args = ap.parse_args()
    sizes = SMOKE if args.cpu_smoke else FULL
    t0 = time.perf_counter()
    payload = {**machine_info(), "mode": "cpu-smoke" if args.cpu_smoke else "full", "sizes": sizes,
               "device": device_info(), "load_average": os.getloadavg(), "budget_s": args.budget_s, "sections": {}}
    if not args.cpu_smoke and jax.default_backend() == "cpu":
        payload["warning"] = "full sizes on a CPU backend: no accelerator was found (is the cuda extra installed?)"
        print(payload["warning"], file=sys.stderr)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"qdyn-gpu-check-{os.getpid()}"
    sections = [("circuits", lambda: circuits(sizes)), ("training", lambda: training(sizes, tmp))]
    sections += [(f"md_{r}", (lambda r=r: md_scaling(sizes, r))) for r in sizes["md_replicas"]]
    sections += [(f"fssh_{n}", (lambda n=n: fssh(sizes, n))) for n in sizes["fssh_traj"]]
    for name, run in sections:
        elapsed = time.perf_counter() - t0
        if elapsed > args.budget_s:
            payload["sections"][name] = {"skipped": f"time budget spent ({elapsed:.0f} s of {args.budget_s:.0f})"}
            continue
        t = time.perf_counter()
        try:
            result = run()
        except Exception as exc:  # keep going: one JSON with whatever worked
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        result["section_s"] = time.perf_counter() - t
        payload["sections"][name] = result
        print(f"{name}: {json.dumps(result)[:300]}", flush=True)
        _write(args.out, payload, t0)
    md_runs = {k: v for k, v in payload["sections"].items() if k.startswith("md_") and "us_per_molecule_step" in v}
    if "md_1" in md_runs and len(md_runs) > 1:
        best = max(md_runs.values(), key=lambda v: v["replicas"])
        # the MD issue's batching target: per molecule-step at many replicas ≤ 1/50 of one replica's
        payload["md_batching_ratio"] = {"replicas": best["replicas"],
                                        "ratio": best["us_per_molecule_step"] / md_runs["md_1"]["us_per_molecule_step"],
                                        "target": 1 / 50}
    _write(args.out, payload, t0)
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


def _write(path: Path, payload: dict, t0: float) -> None:
    payload["total_s"] = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)  # atomic: a killed run leaves the last complete JSON


if __name__ == "__main__":
    main()
