"""Study: shot noise — test error of a trained siVQLM against measurement shots, and what
finite-shot gradients cost.

1. **Evaluation with shots.** A finished H2O siVQLM run (``--run``; by default the seed-0
   invariant run of study_symmetry_breaking.py) is re-loaded with the PennyLane backend
   (native-gate QNode on ``default.qubit``) and ``shots`` ∈ {10², …, 10⁵}, explicit seed;
   the energies of its test frames are compared with the labels and with the exact model.
   Expected: the shot error falls as shots^-1/2 until it is below the model's own error.
2. **Finite-shot gradients.** Training differentiates a force loss twice, which sampling
   cannot give, so ``qdyn train`` refuses shots (qdyn.quantum.execution.require). What
   PennyLane can do is first-order parameter-shift gradients with shots, run as a host
   callback; the script times one such gradient of an energy-only loss on one frame (in a
   child process with a time limit) against the exact backprop gradient, and reports its
   error.

Usage: python benchmarks/study_shot_noise.py [--quick] [--run RUN_DIR] [--shots 100 1000 ...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from _studies import load_average, markdown_table  # noqa: E402
from qdyn.train import load_config  # noqa: E402
from qdyn.train.batches import make_batch  # noqa: E402
from qdyn.train.trainer import load_data, load_run, split_data  # noqa: E402

NAME = "study_shot_noise"
DEFAULT_RUN = Path("runs/study_symmetry_breaking/H2O_seed0_inv")


def test_frames(run: Path):
    cfg = load_config(run / "config.yaml")
    return split_data(load_data(cfg.data), cfg.data)[2]


def energies(run: Path, ds, execution: dict | None):
    """(energies [n] eV of every frame in one jitted vmapped call, compile+first call s, steady s)."""
    model, params, _ = load_run(run, execution=execution)
    batch = make_batch(ds, np.arange(ds.n_frames), ds.n_frames)
    fn = jax.jit(jax.vmap(model.apply, in_axes=(None, 0, 0)))
    t0 = time.perf_counter()
    E = np.asarray(fn(params, batch.R, batch.system))
    t1 = time.perf_counter()
    np.asarray(fn(params, batch.R, batch.system))
    return E, t1 - t0, time.perf_counter() - t1


def evaluation_sweep(run: Path, shots_list, seed: int):
    ds = test_frames(run)
    E_exact, _, _ = energies(run, ds, None)
    rows = [{"shots": None, "energy_mae_meV": 1e3 * float(np.mean(np.abs(E_exact - ds.E))), "shot_error_meV": 0.0}]
    for shots in shots_list:
        E, t_first, t_steady = energies(run, ds, {"backend": "pennylane", "shots": shots, "seed": seed})
        err = E - E_exact
        rows.append({"shots": shots, "energy_mae_meV": 1e3 * float(np.mean(np.abs(E - ds.E))),
                     "shot_error_meV": 1e3 * float(np.mean(np.abs(err))),
                     "shot_error_std_meV": 1e3 * float(np.std(err)), "shot_error_mean_meV": 1e3 * float(np.mean(err)),
                     "compile_seconds": round(t_first, 1), "eval_seconds": round(t_steady, 3), "load": load_average()})
        print(f"shots {shots:>7}  E MAE vs labels {rows[-1]['energy_mae_meV']:8.2f} meV, vs exact model "
              f"{rows[-1]['shot_error_meV']:8.2f} meV (mean {rows[-1]['shot_error_mean_meV']:+.2f})  "
              f"compile {t_first:.0f} s", flush=True)
    return rows, ds.n_frames


def _gradient_child(run: str, shots: int, queue) -> None:
    """One parameter-shift gradient with shots of an energy-only loss on one frame, and the
    exact backprop gradient; puts (seconds, relative error, cosine) on ``queue``."""
    enable_x64()
    run = Path(run)
    ds = test_frames(run).subset(np.arange(1))
    batch = make_batch(ds, np.arange(1), 1)

    def loss_of(model):
        return lambda p: jnp.mean((jax.vmap(model.apply, in_axes=(None, 0, 0))(p, batch.R, batch.system)
                                   - jnp.asarray(ds.E)) ** 2)

    exact_model, params, _ = load_run(run)
    g_exact = ravel_pytree(jax.grad(loss_of(exact_model))(params))[0]
    shot_model, _, _ = load_run(run, execution={"backend": "pennylane", "shots": shots,
                                                "diff_method": "parameter-shift"})
    t0 = time.perf_counter()
    g = ravel_pytree(jax.grad(loss_of(shot_model))(params))[0]
    seconds = time.perf_counter() - t0
    rel = float(jnp.linalg.norm(g - g_exact) / jnp.linalg.norm(g_exact))
    cos = float(g @ g_exact / (jnp.linalg.norm(g) * jnp.linalg.norm(g_exact)))
    t0 = time.perf_counter()
    jax.block_until_ready(jax.grad(loss_of(exact_model))(params))
    queue.put((seconds, rel, cos, time.perf_counter() - t0, int(g.size)))


def gradient_cost(run: Path, shots: int, limit_s: float) -> dict:
    """:func:`_gradient_child` in a child process, given up after ``limit_s`` seconds."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_gradient_child, args=(str(run), shots, queue))
    t0 = time.perf_counter()
    child.start()
    child.join(limit_s)
    row = {"shots": shots, "limit_s": limit_s, "load": load_average()}
    if child.is_alive():
        child.terminate()
        child.join()
        row.update(finished=False, seconds=round(time.perf_counter() - t0, 1))
        print(f"parameter-shift gradient, {shots} shots: not done after {limit_s:.0f} s", flush=True)
        return row
    seconds, rel, cos, exact_s, n = queue.get()
    row.update(finished=True, seconds=round(seconds, 1), relative_error=rel, cosine=cos,
               exact_backprop_seconds=round(exact_s, 3), n_params=n)
    print(f"parameter-shift gradient, {shots} shots: {seconds:.1f} s (exact backprop, unjitted: {exact_s:.2f} s), "
          f"relative error {rel:.3f}, cosine {cos:.3f}", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=DEFAULT_RUN, help="finished siVQLM run directory")
    ap.add_argument("--shots", type=int, nargs="*", default=[100, 1000, 10000, 100000], help="shots per evaluation")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shots' PRNG key")
    ap.add_argument("--gradient-shots", type=int, nargs="*", default=[1000], help="shots of the gradient test")
    ap.add_argument("--gradient-limit", type=float, default=180.0, help="seconds before a gradient test is given up")
    ap.add_argument("--quick", action="store_true", help="one shot count, no gradient test (smoke run)")
    args = ap.parse_args()
    shots_list = [1000] if args.quick else args.shots
    rows, n_test = evaluation_sweep(args.run, shots_list, args.seed)
    if args.quick:
        return
    grads = [gradient_cost(args.run, s, args.gradient_limit) for s in args.gradient_shots]
    results = {"run": str(args.run), "n_test": n_test, "seed": args.seed, "evaluation": rows, "gradients": grads,
               **machine_info()}
    save(NAME, results)
    write_report(results)


def write_report(results: dict) -> None:
    ev = results["evaluation"]
    table = markdown_table(
        ["shots", "E MAE vs labels [meV]", "|E_shots − E_exact| mean [meV]", "mean signed shot error [meV]",
         "compile [s]", f"eval of {results['n_test']} frames [s]"],
        [["exact (statevector)", f"{ev[0]['energy_mae_meV']:.2f}", "0", "0", "", ""]]
        + [[r["shots"], f"{r['energy_mae_meV']:.2f}", f"{r['shot_error_meV']:.2f}", f"{r['shot_error_mean_meV']:+.2f}",
            r["compile_seconds"], r["eval_seconds"]] for r in ev[1:]])
    grad_lines = []
    for g in results["gradients"]:
        if g["finished"]:
            grad_lines.append(f"- parameter-shift gradient, {g['shots']} shots, one frame, {g['n_params']} parameters: "
                              f"{g['seconds']} s (exact backprop, not jitted: {g['exact_backprop_seconds']} s); "
                              f"relative error {g['relative_error']:.3f}, cosine to the exact gradient {g['cosine']:.3f}.")
        else:
            grad_lines.append(f"- parameter-shift gradient, {g['shots']} shots, one frame: not finished within "
                              f"{g['limit_s']:.0f} s (load {g['load'][0]}).")
    text = (f"`python benchmarks/study_shot_noise.py` on {results['date']}, {results['machine']['cpu']}, jax "
            f"{results['versions']['jax']}, pennylane {results['versions']['pennylane']}. Model: `{results['run']}` "
            f"(H2O siVQLM), its {results['n_test']} test frames, PennyLane `default.qubit` native-gate QNode with "
            f"shots (seed {results['seed']}).\n\n" + table + "\n\n" + "\n".join(grad_lines)
            + "\n\n![shot noise](results/study_shot_noise.png)")
    update_readme_section(NAME, "### Shot noise: evaluation and gradients", text)
    plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = results["evaluation"]
    shots = np.array([r["shots"] for r in ev[1:]], float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(shots, [r["energy_mae_meV"] for r in ev[1:]], "o-", label="MAE vs labels")
    ax.loglog(shots, [r["shot_error_meV"] for r in ev[1:]], "s-", label="|E_shots − E_exact|")
    ax.axhline(ev[0]["energy_mae_meV"], color="k", ls="--", label="exact model MAE")
    ref = ev[1]["shot_error_meV"] * np.sqrt(shots[0] / shots)
    ax.loglog(shots, ref, "k:", label="∝ shots^-1/2")
    ax.set(xlabel="shots per evaluation", ylabel="test energy error [meV]", title="H2O siVQLM with shot noise")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
