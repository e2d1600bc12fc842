"""Sharded training, MD and surface hopping against one device (run by tests/test_parallel.py).

XLA's host-device count must be set before JAX starts, so this runs in a fresh process:

    python tests/parallel_check.py --devices 8 --meshes 2 4 8

prints one JSON line with, per mesh size, the largest deviation from the single-device
result (training: params after three Adam steps on a batch the mesh does not divide, so
zero-weight padding is in play; MD: positions, momenta and energies after three Langevin
blocks; FSSH: populations after three blocks), the train step's compiled variants (1) and
the trace counts of the MD energy and the FSSH diabatic matrix next to one device's (a
retrace per block would show as more traces).
With ``--coordinator`` it joins a multi-process run (jax.distributed) and reports the
same quantities over the global mesh.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _args():
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=8, help="host-platform devices of this process")
    p.add_argument("--meshes", type=int, nargs="+", default=[2, 4, 8], help="mesh sizes to compare; 0 = all")
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-process run)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--skip-fssh", action="store_true", help="training and MD only")
    return p.parse_args()


ARGS = _args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.devices}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from qdyn import parallel  # noqa: E402

parallel.initialize_distributed(ARGS.coordinator, ARGS.num_processes, ARGS.process_id)

from qdyn import enable_x64  # noqa: E402

enable_x64()

from qdyn.data import load_shipped  # noqa: E402
from qdyn.md import MDOutput, MDSettings, run_md  # noqa: E402
from qdyn.md.potentials import spring_network  # noqa: E402
from qdyn.models.config import build_model  # noqa: E402
from qdyn.namd import run_fssh, tully  # noqa: E402
from qdyn.train import parse_config  # noqa: E402
from qdyn.train.batches import make_batch  # noqa: E402
from qdyn.train.losses import make_loss_fn  # noqa: E402
from qdyn.train.optim import make_optimizer  # noqa: E402
from qdyn.train.trainer import _make_step  # noqa: E402
from qdyn.uncertainty.ensemble import MemberAxis  # noqa: E402

BPNN = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0], "species": [1, 8]}
BATCH = 10  # not a multiple of 4 or 8: the trainer pads with zero-weight frames


def max_dev(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def train_steps(model, params0, ds, mesh, n_steps=3):
    """Params after ``n_steps`` Adam steps, as the trainer takes them, and the step's trace count."""
    cfg = parse_config({"model": BPNN, "batch_size": BATCH})
    loss = make_loss_fn(model.apply, sigma_E=0.1, sigma_F=1.0)
    tx = make_optimizer(cfg.optim, model.param_labels(params0), trainable={"quantum", "classical"})
    step = _make_step(cfg, loss, tx, MemberAxis(), mesh)
    params = parallel.put_replicated(params0, mesh)
    opt_state = parallel.put_replicated(tx.init(params0), mesh)
    ema = params
    w = parallel.put_replicated(tuple(np.float64(x) for x in (1.0, 1.0, 0.0, cfg.optim.learning_rate)), mesh)
    size = parallel.padded_size(BATCH, mesh)
    for i in range(n_steps):
        batch = parallel.put_sharded(make_batch(ds, np.arange(i * BATCH, (i + 1) * BATCH), size), mesh)
        params, opt_state, ema, _, _ = step(params, opt_state, ema, batch, *w)
    return parallel.tree_to_host(params), (step.compilations() if hasattr(step, "compilations") else step._cache_size())


def md_run(R, system, mesh, n_blocks):
    """Final positions, velocities and energies of 8 Langevin replicas of a spring-network
    water (cheap to compile; the MD machinery is the same for every energy function) and the
    trace count of the energy function."""
    traces = [0]
    springs, init_params = spring_network(R, cutoff=2.0)

    def energy_fn(R, **kw):  # a fresh function per call: fresh compile caches, honest trace counts
        traces[0] += 1
        return springs(R, **kw)

    res = run_md(energy_fn, init_params(), R, system,
                 MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=4 * n_blocks, replicas=8),
                 output=MDOutput(stride=2, frames_per_block=2, store_replicas=8, progress=None),
                 key=jax.random.PRNGKey(1), mesh=mesh)
    return (res.position[-1], res.velocity[-1], res.potential), traces[0]


def fssh_run(mesh, n_blocks):
    """Populations and final positions of 16 Tully-1 trajectories; traces of W."""
    traces = [0]
    W, p = tully.model(1)

    def W_counted(params, R):  # a fresh function per call: fresh compile caches
        traces[0] += 1
        return W(params, R)

    res = run_fssh(W_counted, p, masses=[tully.MASS_AMU], dt_fs=0.5, n_steps=20 * n_blocks,
                   key=jax.random.PRNGKey(3), initial_state=0, replicas=16, sampler=tully.sampler(20.0, -8.0),
                   stride=10, frames_per_block=2, progress=None, mesh=mesh)
    return (res.active_fraction, res.coefficient_population, res.final_state.R), traces[0]


def main():
    ds = load_shipped("H2O").subset(np.arange(40))
    model = build_model(BPNN, species=[1, 8])
    params0 = model.init(jax.random.PRNGKey(0))
    report = {"process": jax.process_index(), "n_processes": jax.process_count(),
              "devices": len(jax.devices()), "meshes": {}}
    R, system = ds.to_system(0)
    ref_train, _ = train_steps(model, params0, ds, None)
    ref_md, ref_md_traces = md_run(R, system, None, n_blocks=3)
    ref_fssh, ref_fssh_traces = (None, 0) if ARGS.skip_fssh else fssh_run(None, n_blocks=3)
    for m in ARGS.meshes:
        mesh = parallel.make_mesh("all" if m == 0 else m)
        p, train_cache = train_steps(model, params0, ds, mesh)
        md, md_traces = md_run(R, system, mesh, n_blocks=3)
        fs, fssh_traces = (None, 0) if ARGS.skip_fssh else fssh_run(mesh, n_blocks=3)
        # a retrace per block would trace the energy function more often than on one device
        report["meshes"][str(parallel.mesh_size(mesh))] = {
            "train_params": max_dev(p, ref_train), "train_params_changed": max_dev(p, parallel.tree_to_host(params0)),
            "train_step_compilations": train_cache, "md": max_dev(md, ref_md), "md_traces": md_traces,
            "md_traces_one_device": ref_md_traces, "fssh": None if fs is None else max_dev(fs, ref_fssh),
            "fssh_traces": fssh_traces, "fssh_traces_one_device": ref_fssh_traces}
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
