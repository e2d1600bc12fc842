"""Training throughput: configurations per second of a full train step (E + F loss,
gradients through the forces, optax update) on the shipped H2O data, float64.

Usage: python benchmarks/bench_training.py [--batch 32]
Writes benchmarks/results/bench_training.json and updates benchmarks/README.md.
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

from _common import machine_info, save, time_compiled, update_readme_section  # noqa: E402
from qdyn.data import load_shipped  # noqa: E402
from qdyn.models import build_model  # noqa: E402
from qdyn.train.batches import make_batch  # noqa: E402
from qdyn.train.config import OptimConfig  # noqa: E402
from qdyn.train.losses import make_loss_fn  # noqa: E402
from qdyn.train.optim import make_optimizer  # noqa: E402

MODELS = {
    "siVQLM H2O (4 qubits, D=6)": {"family": "sivqlm", "template": "H2O", "layers": 6, "blocks": 1},
    "siVQLM H2O (4 qubits, D=16, B=2)": {"family": "sivqlm", "template": "H2O", "layers": 16, "blocks": 2},
    "generic QNN H2O (4 qubits, D=8)": {"family": "generic", "template": "H2O", "layers": 8, "blocks": 1},
    "BPNN [32, 32]": {"family": "bpnn", "hidden": [32, 32], "cutoff": 5.0, "n_radial": 8, "zetas": [1.0, 4.0],
                      "eta_angular": 0.1},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    ds = load_shipped("H2O")
    batch = make_batch(ds, np.arange(args.batch), args.batch)
    info = machine_info()
    rows = {}
    for label, mc in MODELS.items():
        model = build_model(mc, species=(1, 8))
        params = model.init(jax.random.PRNGKey(0))
        loss = make_loss_fn(model.apply, sigma_E=0.01, sigma_F=1.0)
        tx = make_optimizer(OptimConfig(), model.param_labels(params), trainable={"quantum", "classical"})

        def step(p, s, b):
            (val, _), g = jax.value_and_grad(loss, has_aux=True)(p, b, 1.0, 1.0, 0.0)
            u, s = tx.update(g, s, p, value=val)
            return jax.tree_util.tree_map(lambda a, c: a + OptimConfig().learning_rate * c, p, u), s, val  # unit-rate tx

        tc, ts = time_compiled(step, params, tx.init(params), batch)
        rows[label] = {"compile_s": tc, "step_ms": 1e3 * ts, "configs_per_s": args.batch / ts}
        print(f"{label:34s} compile {tc:6.1f} s  step {1e3 * ts:8.2f} ms  {args.batch / ts:9.0f} configs/s", flush=True)
    save("bench_training", {"batch": args.batch, "rows": rows, **info})
    text = "\n".join(["| model | train-step compile | step (batch %d) | configurations / s |" % args.batch,
                      "|---|---|---|---|"] + [f"| {k} | {v['compile_s']:.1f} s | {v['step_ms']:.2f} ms | {v['configs_per_s']:.0f} |"
                                              for k, v in rows.items()])
    update_readme_section("bench_training", f"Measured {info['date']} on {info['machine']['cpu']} "
                          f"({info['machine']['cores']} cores), float64, E+F loss.", text)

if __name__ == "__main__":
    main()
