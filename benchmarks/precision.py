"""float32 against float64: what ``qdyn --float32`` costs in accuracy and gains in speed.

For the H2O siVQLM, a BPNN and the hybrid on the shipped H2O data (split as ``qdyn train``
splits it), with the same parameters in both precisions (float64 values rounded to float32):

* energy and force deviation of float32 from float64 on the test split;
* NVE energy drift of MD (replicas of the H2O molecule, 0.25 fs) in float32 and float64;
* speed: energies + forces and an Adam training step per sample (AOT-compiled in each
  precision, timed in alternating A/B rounds, minimum per side), and MD per molecule-step.

The float32 side runs exactly as the CLI's ``--float32`` does: JAX's x64 switched off, the
model rebuilt, data and parameters in float32.

Parameters: initialised and normalised on the training split (``--epochs 0``, default) or
trained for ``--epochs`` in float64 first. The deviation measures the arithmetic, which
does not depend much on the fit; trained parameters give the same picture with values a
user would see.

Usage: python benchmarks/precision.py [--small] [--epochs N] [--readme]
Writes benchmarks/results/precision.json (precision_small.json with --small), a plot
precision.png beside it, and (without --small) the precision section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from qdyn import enable_x64  # noqa: E402

enable_x64()

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402

MODELS = {  # full size / --small
    "siVQLM": ({"family": "sivqlm", "layers": 6}, {"family": "sivqlm", "layers": 2}),
    "BPNN": ({"family": "bpnn", "hidden": [16, 16]}, {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}),
    "hybrid": ({"family": "hybrid", "n_qubits": 4, "layers": 2},
               {"family": "hybrid", "hidden": [8], "n_radial": 4, "n_qubits": 2, "layers": 1}),
}


def build(mcfg: dict):
    """The model of ``{"config": model config, "species": [...]}`` under the x64 setting in force."""
    from qdyn.models.config import build_model

    return build_model(mcfg["config"], species=mcfg["species"])


def set_x64(on: bool) -> None:
    jax.config.update("jax_enable_x64", bool(on))


def to_dtype(tree, dtype):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=dtype) if np.issubdtype(np.asarray(x).dtype,
                                                                                        np.floating) else x, tree)


def prepare(name: str, cfg: dict, epochs: int, small: bool):
    """(model config, float64 params, train split, test split)."""
    from qdyn.train import parse_config, train
    from qdyn.train.trainer import _model_config, load_data, normalize_params, split_data

    tcfg = parse_config({"model": cfg, "data": {"path": "shipped:H2O"}, "epochs": max(epochs, 1), "batch_size": 32})
    ds = load_data(tcfg.data)
    if small:
        ds = ds.subset(np.arange(min(ds.n_frames, 80)))
    train_ds, _, test_ds = split_data(ds, tcfg.data)
    species = sorted({int(z) for z in np.unique(train_ds.Z) if z > 0})
    mcfg = {"config": _model_config(tcfg, species, train_ds), "species": species}
    if epochs > 0:
        res = train(tcfg, RESULTS / f"precision_runs/{name}", progress=False, data=ds)
        return mcfg, res.params, train_ds, test_ds
    model = build(mcfg)
    params, _ = normalize_params(model, model.init(jax.random.PRNGKey(0)), train_ds, "species_lstsq")
    return mcfg, params, train_ds, test_ds


class Side:
    """One precision: model rebuilt under its x64 setting, params cast, AOT programs."""

    def __init__(self, mcfg, params64, train_ds, test_ds, x64: bool, batch: int):
        from qdyn.models.base import energy_and_forces_fn
        from qdyn.train.batches import make_batch
        from qdyn.train.losses import make_loss_fn
        from qdyn.train.trainer import predict
        import optax

        set_x64(x64)
        self.x64 = x64
        self.model = build(mcfg)
        self.params = jax.tree_util.tree_map(jax.numpy.asarray, to_dtype(params64, np.float64 if x64 else np.float32))
        self.E, self.F = predict(self.model, self.params, test_ds)
        b = make_batch(train_ds, np.arange(batch), batch)
        ef = jax.vmap(energy_and_forces_fn(self.model.apply), in_axes=(None, 0, 0))
        loss = make_loss_fn(self.model.apply, sigma_E=0.1, sigma_F=1.0)
        tx = optax.adam(1e-3)
        opt = tx.init(self.params)

        def step(p, o, b):
            (l, _), g = jax.value_and_grad(loss, has_aux=True)(p, b, 1.0, 1.0, 0.0)
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, l

        t = time.perf_counter()
        self.ef = jax.jit(ef).lower(self.params, b.R, b.system).compile()
        self.ef_compile_s = time.perf_counter() - t
        t = time.perf_counter()
        self.step = jax.jit(step).lower(self.params, opt, b).compile()
        self.step_compile_s = time.perf_counter() - t
        self.ef_args, self.step_args = (self.params, b.R, b.system), (self.params, opt, b)
        jax.block_until_ready(self.ef(*self.ef_args))
        jax.block_until_ready(self.step(*self.step_args))
        set_x64(True)


def alternate(a, b, rounds: int) -> tuple[float, float]:
    """Minimum seconds per call of ``a`` and ``b``, timed in alternating rounds (load on a
    shared machine drifts; alternating gives both sides the same drift)."""
    ta, tb = [], []
    for _ in range(rounds):
        for fn, acc in ((a, ta), (b, tb)):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            acc.append(time.perf_counter() - t)
    return min(ta), min(tb)


def nve(mcfg, params64, replicas: int, steps: int, rounds: int) -> dict:
    """NVE of ``replicas`` H2O molecules in each precision, runs alternating float64 /
    float32: per precision the mean over replicas of max |E_tot(t) - E_tot(0)| [eV] (first
    run) and the best µs per molecule-step (every later run reuses its compiled block)."""
    from qdyn import md
    from qdyn.structures import water

    R, system = water()
    sides = {}
    for x64 in (True, False):
        set_x64(x64)
        model = build(mcfg)
        sides[x64] = (md.model_energy_fn(model.apply),  # one function per side: compiled blocks reused
                      jax.tree_util.tree_map(jax.numpy.asarray, to_dtype(params64, np.float64 if x64 else np.float32)))
    out = {x64: {"best_run_s": np.inf} for x64 in sides}
    for i in range(rounds):
        for x64, (energy_fn, params) in sides.items():
            set_x64(x64)
            res = md.run_md(energy_fn, params, R, system,
                            md.MDSettings(ensemble="nve", dt_fs=0.25, n_steps=steps, temperature_K=300.0,
                                          replicas=replicas, remove_rotation=True, max_temperature_K=1e9),
                            output=md.MDOutput(stride=10, frames_per_block=steps // 10, progress=None),
                            key=jax.random.PRNGKey(0))
            o = out[x64]
            if i == 0:
                o["nve_drift_eV"] = float(np.mean(np.max(np.abs(res.total - res.total[:1]), axis=0)))
                o["dtype"] = str(np.asarray(res.position).dtype)
            o["best_run_s"] = min(o["best_run_s"], res.timings["run_s"])
    set_x64(True)
    for o in out.values():
        o["md_us_per_molecule_step"] = 1e6 * o.pop("best_run_s") / (steps * replicas)
    return {"float64": out[True], "float32": out[False]}


def bench(name, cfg, args) -> dict:
    mcfg, params, train_ds, test_ds = prepare(name, cfg, args.epochs, args.small)
    batch = 16 if args.small else 64
    s64 = Side(mcfg, params, train_ds, test_ds, True, batch)
    s32 = Side(mcfg, params, train_ds, test_ds, False, batch)
    mask = test_ds.Z > 0
    n_at = mask.sum(1)
    dE = np.abs(np.asarray(s32.E, np.float64) - s64.E)
    dF = np.abs(np.asarray(s32.F, np.float64) - s64.F)[mask]
    t64, t32 = alternate(lambda: s64.ef(*s64.ef_args), lambda: s32.ef(*s32.ef_args), args.rounds)
    st64, st32 = alternate(lambda: s64.step(*s64.step_args), lambda: s32.step(*s32.step_args), args.rounds)
    steps, replicas = (100, 8) if args.small else (2000, 64)
    md_runs = nve(mcfg, params, replicas, steps, 3)
    md64, md32 = md_runs["float64"], md_runs["float32"]
    assert md32["dtype"] == "float32" and md64["dtype"] == "float64", (md32, md64)
    label_F_rms = float(np.sqrt(np.mean(test_ds.F[mask] ** 2)))
    return {
        "model": name, "config": mcfg, "test_frames": int(test_ds.n_frames),
        "energy_dev_max_meV": 1e3 * float(dE.max()), "energy_dev_rms_meV_per_atom": 1e3 * float(np.sqrt(np.mean((dE / n_at) ** 2))),
        "force_dev_max_meV_per_A": 1e3 * float(dF.max()), "force_dev_rms_meV_per_A": 1e3 * float(np.sqrt(np.mean(dF ** 2))),
        "label_force_rms_meV_per_A": 1e3 * label_F_rms,
        "ef_us_per_sample": {"float64": 1e6 * t64 / batch, "float32": 1e6 * t32 / batch, "speedup": t64 / t32},
        "train_step_us_per_sample": {"float64": 1e6 * st64 / batch, "float32": 1e6 * st32 / batch,
                                     "speedup": st64 / st32},
        "compile_s": {"ef_float64": s64.ef_compile_s, "ef_float32": s32.ef_compile_s,
                      "step_float64": s64.step_compile_s, "step_float32": s32.step_compile_s},
        "md": {"replicas": replicas, "steps": steps, "dt_fs": 0.25, "float64": md64, "float32": md32,
               "speedup": md64["md_us_per_molecule_step"] / md32["md_us_per_molecule_step"]},
    }


def table(payload: dict) -> str:
    lines = ["| model | ΔE max (meV) | ΔF rms / max (meV/Å) | NVE drift f64 / f32 (meV) | E+F speed-up | "
             "train-step speed-up | MD speed-up |", "|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        lines.append(f"| {r['model']} | {r['energy_dev_max_meV']:.2g} | {r['force_dev_rms_meV_per_A']:.2g} / "
                     f"{r['force_dev_max_meV_per_A']:.2g} | {1e3 * r['md']['float64']['nve_drift_eV']:.3g} / "
                     f"{1e3 * r['md']['float32']['nve_drift_eV']:.3g} | {r['ef_us_per_sample']['speedup']:.2f}× | "
                     f"{r['train_step_us_per_sample']['speedup']:.2f}× | {r['md']['speedup']:.2f}× |")
    m = payload["machine"]
    lines.append("")
    lines.append(f"{payload['date']}, {m['cpu']} ({m['cores']} cores), load average {payload['load_before']} → "
                 f"{payload['load_after']} (a shared machine: speed-ups are A/B-alternated ratios, the absolute "
                 f"µs are in the JSON); jax {payload['versions']['jax']}; params: {payload['params']}; "
                 f"{'small sizes' if payload['small'] else 'full sizes'}.")
    if payload["params"].startswith("normalised"):
        lines.append("Untrained parameters: the NVE drift is that of a random energy surface (hot, partly "
                     "exploding dynamics), comparable between the precisions but not a physical drift; "
                     "`--epochs N` trains first.")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = payload["results"]
    names = [r["model"] for r in rs]
    x = np.arange(len(rs))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(x - 0.2, [r["force_dev_rms_meV_per_A"] for r in rs], 0.4, label="force dev. rms (meV/Å)")
    a.bar(x + 0.2, [1e3 * r["md"]["float32"]["nve_drift_eV"] for r in rs], 0.4, label="NVE drift f32 (meV)")
    a.set_yscale("log"), a.set_xticks(x, names), a.legend(fontsize=8), a.set_title("float32 − float64")
    for i, key in enumerate(("ef_us_per_sample", "train_step_us_per_sample")):
        b.bar(x + (i - 0.5) * 0.27, [r[key]["speedup"] for r in rs], 0.27, label=key.replace("_us_per_sample", ""))
    b.bar(x + 0.4, [r["md"]["speedup"] for r in rs], 0.27, label="MD")
    b.axhline(1.0, color="k", lw=0.8)
    b.set_xticks(x, names), b.set_ylabel("float64 time / float32 time"), b.legend(fontsize=8), b.set_title("speed-up")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny models and sizes (a smoke run)")
    ap.add_argument("--epochs", type=int, default=0, help="train each model this many epochs first (float64)")
    ap.add_argument("--rounds", type=int, default=10, help="alternating A/B timing rounds")
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="subset of " + ", ".join(MODELS))
    ap.add_argument("--readme", action="store_true", help="only rewrite the README section from the saved JSON")
    args = ap.parse_args()
    name = "precision_small" if args.small else "precision"
    if args.readme:
        payload = json.loads((RESULTS / f"{name}.json").read_text())
    else:
        payload = {**machine_info(), "small": args.small, "load_before": round(os.getloadavg()[0], 2),
                   "params": "normalised initialisation" if args.epochs == 0 else f"trained {args.epochs} epochs",
                   "results": []}
        for m in args.models:
            r = bench(m, MODELS[m][1 if args.small else 0], args)
            print(json.dumps({k: r[k] for k in ("model", "energy_dev_max_meV", "force_dev_rms_meV_per_A",
                                                "ef_us_per_sample", "train_step_us_per_sample", "md")}), flush=True)
            payload["results"].append(r)
        payload["load_after"] = round(os.getloadavg()[0], 2)
        save(name, payload)
        plot(payload, RESULTS / f"{name}.png")
    text = table(payload)
    print(text)
    if not args.small or args.readme:
        update_readme_section("precision", "## float32 against float64 (benchmarks/precision.py)",
                              text + f"\n\n![precision](results/{name}.png)")


if __name__ == "__main__":
    main()
