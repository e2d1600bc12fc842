"""Fit an MD observable: move a trained H2O model's bend frequency to a reference value while
a data term keeps its energies and forces.

1. Train a BPNN (hidden (32, 32)) on the shipped B3LYP/def2-SVP water frames (400 train /
   50 val / 50 test), or load it from --run.
2. Observable: the centre of the H–O–H bend band (1200–2100 cm⁻¹) of the velocity
   autocorrelation spectrum of NVE runs from the model's own minimum, 8 replicas with fixed
   300 K initial velocities (rotation removed), 512 fs each at dt 0.5 fs; differentiated
   through the trajectories (qdyn.diffsim, checkpointed blocks).
3. Target: the experimental gas-phase bend fundamental ν2 = 1594.7 cm⁻¹ (NIST CCCBDB), within
   ±5 cm⁻¹. Loss = ((ν − ν_target) / 5 cm⁻¹)² + w · ½ (L_E / L_E(start) + L_F / L_F(start)),
   with L_E, L_F the energy and force terms of qdyn's training loss on the training frames; Adam on the trainable
   parameter groups (the descriptor statistics stay fixed).
4. Before/after: the fitted observable, an independent check with *new* initial velocities
   and a 2 ps NVE run through qdyn's MD loop (``run_md``; spectrum peak), the model's harmonic
   bend frequency, and energy/force RMSE on the held-out test frames (criterion: within 10 %
   of the starting model's).

Usage: python benchmarks/fit_observable.py [--run runs/fit_observable_model] [--train] [--steps 200] [--lr 2e-4]
                                          [--data-weight 5]
       python benchmarks/fit_observable.py --readme   (redraw the plot, rewrite the README section from the JSON)
Writes benchmarks/results/fit_observable.{json,png} and the fit_observable section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from qdyn import units  # noqa: E402
from qdyn.diffsim import band_centroid_cm, make_rollout, vacf_spectrum  # noqa: E402
from qdyn.md import analysis  # noqa: E402
from qdyn.md.adapters import model_energy_fn  # noqa: E402
from qdyn.md.integrators import make_space, masses  # noqa: E402
from qdyn.md.momenta import maxwell_boltzmann  # noqa: E402

NAME = "fit_observable"
TARGET_CM, TOL_CM = 1594.7, 5.0
BAND = (1200.0, 2100.0)
DATA_TOL = 0.10


def data_config():
    from qdyn.train import parse_config

    return parse_config({
        "model": {"family": "bpnn", "hidden": [32, 32]},
        "data": {"path": "shipped:H2O", "n_train": 400, "n_val": 50, "n_test": 50},
        "epochs": 300, "batch_size": 32, "seed": 0,
        "optim": {"learning_rate": 5e-3, "schedule": "cosine", "final_lr_fraction": 0.01},
        "checkpoint_every": 100,
    })


def train_or_load(run: Path, retrain: bool):
    from qdyn.train import load_run, train

    if retrain or not (run / "params.msgpack").exists():
        train(data_config(), run, progress=True)
    model, params, _ = load_run(run)
    return model, params


def splits():
    from qdyn.train.trainer import load_data, split_data

    cfg = data_config()
    return split_data(load_data(cfg.data), cfg.data)


def rmse(model, params, ds) -> dict:
    from qdyn.train.trainer import predict

    E, F = predict(model, params, ds)
    return {"energy_rmse_meV": float(1e3 * np.sqrt(np.mean((E - ds.E) ** 2))),
            "force_rmse_meV_per_A": float(1e3 * np.sqrt(np.mean((F - ds.F) ** 2)))}


def initial_conditions(model, params, *, replicas: int, seed: int):
    """The model's minimum and ``replicas`` sets of 300 K velocities [Å/fs] (no COM motion,
    no rotation)."""
    from qdyn.quickstart import relax
    from qdyn.structures import water

    R, system = water()
    R_min, fmax = relax(model, params, R, system)
    mass = jnp.asarray(masses(system))
    keys = jax.random.split(jax.random.PRNGKey(seed), replicas)
    p = jax.vmap(lambda k: maxwell_boltzmann(k, jnp.asarray(R_min), mass, temperature_K=300.0,
                                             remove_rotation=True))(keys)  # amu·Å/τ
    V0 = p / mass[None, :, None] / units.TIME_UNIT_FS
    return jnp.asarray(R_min), V0, mass, system, fmax


def bend_observable(model, R0, V0, mass, system, *, n_frames=1024):
    ro = make_rollout(model_energy_fn(model.apply), make_space(system).shift_fn, dt_fs=0.5, n_frames=n_frames,
                      stride=1, frames_per_block=32)
    runs = jax.vmap(ro.run, in_axes=(None, None, 0, None, None))

    def nu(params):
        fr = runs(params, R0, V0, mass, system)
        spectra = jax.vmap(lambda v: vacf_spectrum(v, mass, ro.dt_frame_fs)[1])(fr.velocity)
        wn, _ = vacf_spectrum(fr.velocity[0], mass, ro.dt_frame_fs)
        return band_centroid_cm(wn, spectra.mean(axis=0), *BAND)

    return nu


def md_check(model, params, *, seed: int) -> dict:
    """Bend peak of a 2 ps NVE run (new velocities, qdyn's MD loop) and the harmonic bend."""
    from qdyn.md import MDOutput, MDSettings, run_md
    from qdyn.quickstart import relax
    from qdyn.structures import water

    R, system = water()
    R_min, _ = relax(model, params, R, system)
    mass = masses(system)
    energy_fn = model_energy_fn(model.apply)
    harm = analysis.harmonic_frequencies(energy_fn, params, R_min, system, mass)
    res = run_md(energy_fn, params, R_min, system,
                 MDSettings(ensemble="nve", dt_fs=0.5, n_steps=4000, temperature_K=300.0, replicas=8,
                            remove_rotation=True),
                 output=MDOutput(stride=2, store_replicas=8, progress=None), key=jax.random.PRNGKey(seed))
    wn, I = analysis.vibrational_spectrum(res.velocity, mass, res.time_fs[1] - res.time_fs[0])
    band = (wn > BAND[0]) & (wn < BAND[1])
    peak = float(wn[band][np.argmax(I[band])])
    return {"md_bend_peak_cm": peak, "harmonic_cm": harm.tolist(), "spectrum": (wn.tolist(), I.tolist())}


def fit(model, params, train_ds, nu_fn, *, steps: int, lr: float, data_weight: float, log):
    from qdyn.train.batches import make_batch
    from qdyn.train.losses import make_loss_fn
    # the data's own scales (energy per atom, force RMS), as training normalises them
    sigma_F = float(np.sqrt(np.mean(train_ds.F ** 2)))
    sigma_E = float(np.std(train_ds.E / 3.0))
    loss_fn = make_loss_fn(model.apply, sigma_E=sigma_E, sigma_F=sigma_F)
    batch = make_batch(train_ds, np.arange(train_ds.n_frames), train_ds.n_frames)

    def data_losses(p):
        aux = loss_fn(p, batch, 1.0, 1.0, 0.0)[1]
        return jnp.stack([aux["loss_E"], aux["loss_F"]])

    # energies and forces each relative to the starting model: both are to be kept
    L0 = jax.jit(data_losses)(params)

    def total(p):
        nu = nu_fn(p)
        ratios = data_losses(p) / L0
        return ((nu - TARGET_CM) / TOL_CM) ** 2 + data_weight * jnp.mean(ratios), (nu, ratios)

    grad_fn = jax.jit(jax.value_and_grad(total, has_aux=True))
    # the model's fixed groups (descriptor statistics g_mean/g_std) stay as trained: a step of
    # lr on a tiny g_std would rescale a whole descriptor
    labels = {k: "fixed" if model.groups.get(k) == "fixed" else "train" for k in params}
    opt = optax.multi_transform({"train": optax.adam(lr), "fixed": optax.set_to_zero()}, labels)
    state = opt.init(params)
    history = []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        (loss, (nu, ratios)), g = grad_fn(params)
        history.append({"step": k, "loss": float(loss), "nu_cm": float(nu), "data_loss_ratio": float(jnp.mean(ratios)),
                        "energy_loss_ratio": float(ratios[0]), "force_loss_ratio": float(ratios[1]),
                        "seconds": time.perf_counter() - t0})
        log(f"step {k:3d}  ν_bend {float(nu):8.2f} cm⁻¹  train loss / start: energy {float(ratios[0]):.4f}, "
            f"force {float(ratios[1]):.4f}  ({history[-1]['seconds']:.1f} s)")
        if k == steps:
            break
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, history


def plot(payload, path):
    from qdyn.plotting import pyplot, save_figure

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    h = payload["history"]
    a.plot([r["step"] for r in h], [r["nu_cm"] for r in h], color="k", label="bend band centre (fitted runs)")
    a.axhspan(TARGET_CM - TOL_CM, TARGET_CM + TOL_CM, color="tab:green", alpha=0.3, label="target ± tolerance")
    a.set_xlabel("optimiser step")
    a.set_ylabel("ν [cm⁻¹]")
    a2 = a.twinx()
    a2.plot([r["step"] for r in h], [r["data_loss_ratio"] for r in h], color="tab:blue", ls="--")
    a2.set_yscale("log")
    a2.set_ylabel("train data loss / start (log)", color="tab:blue")
    a.legend(loc="upper right")
    for key, colour in (("before", "tab:gray"), ("after", "tab:red")):
        wn, I = (np.asarray(x) for x in payload[key]["check"]["spectrum"])
        sel = (wn > 1000) & (wn < 4500)
        b.plot(wn[sel], I[sel], color=colour, lw=1, label=f"{key}: bend {payload[key]['check']['md_bend_peak_cm']:.0f}")
    b.axvline(TARGET_CM, color="tab:green", ls=":", label=f"target {TARGET_CM}")
    b.set_xlabel("wavenumber [cm⁻¹]")
    b.set_ylabel("VACF spectrum (2 ps NVE, new velocities)")
    b.set_xlim(1300, 4200)
    b.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def readme(payload):
    b, a = payload["before"], payload["after"]

    def row(name, key, unit, fmt="{:.2f}"):
        return f"| {name} [{unit}] | {fmt.format(b[key])} | {fmt.format(a[key])} |"

    lines = [f"BPNN (32, 32) on shipped H2O (B3LYP/def2-SVP); target bend ν2 = {TARGET_CM} ± {TOL_CM} cm⁻¹ "
             f"(experiment); {payload['steps']} Adam steps (lr {payload['lr']}, data weight {payload['data_weight']}), "
             f"{payload['fit_seconds']:.0f} s; load average {payload['load_average']}.", "",
             "| quantity | before | after |", "|---|---|---|",
             row("fitted observable: bend band centre, 8 × 512 fs NVE", "nu_fit_cm", "cm⁻¹"),
             row("check: bend peak, 8 × 2 ps NVE, new velocities", "md_bend_peak_cm", "cm⁻¹", "{:.0f}"),
             row("harmonic bend (model Hessian)", "harmonic_bend_cm", "cm⁻¹", "{:.1f}"),
             row("test energy RMSE", "energy_rmse_meV", "meV"),
             row("test force RMSE", "force_rmse_meV_per_A", "meV/Å"), "",
             f"Target met: **{payload['target_met']}** (|ν − target| = {abs(a['nu_fit_cm'] - TARGET_CM):.2f} cm⁻¹); "
             f"data errors within {DATA_TOL:.0%}: **{payload['data_kept']}** (energy ×{payload['energy_ratio']:.3f}, "
             f"force ×{payload['force_ratio']:.3f}).", ""]
    if not payload["data_kept"]:
        lines += ["Why the energies cannot stay within 10 %: the target (experiment) and the data (B3LYP/def2-SVP) "
                  "disagree about the bend. Moving ν by ~2 % changes the bend curvature by ~4 %; a rough estimate "
                  "(½ Δk θ² at a 10° bend) gives ~2 meV, against a starting test energy RMSE of 0.5 meV, while the "
                  "forces' share is small against their 18 meV/Å. Other settings trade the two (data weight 10, lr 1e-4: ν 0.5 cm⁻¹ short "
                  "of the tolerance, energy ×1.52, force ×1.06; one combined data term: ν met, energy ×1.56, "
                  "force ×1.04 — `results/fit_observable_single_data_term.log`). A target consistent with the "
                  "data (e.g. a reference computed at the data's own level) has no such conflict.", ""]
    lines += ["![fit](results/fit_observable.png)"]
    update_readme_section(NAME, "Observable fitting: H2O bend frequency (`python benchmarks/fit_observable.py`)",
                          "\n".join(lines))


def summary(model, params, test_ds, nu_fn, seed):
    check = md_check(model, params, seed=seed)
    harm = check["harmonic_cm"]
    return {"nu_fit_cm": float(jax.jit(nu_fn)(params)), "md_bend_peak_cm": check["md_bend_peak_cm"],
            "harmonic_bend_cm": float(min(harm)), "harmonic_cm": harm, **rmse(model, params, test_ds),
            "check": check}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/fit_observable_model"))
    ap.add_argument("--train", action="store_true", help="retrain even if --run holds a model")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--data-weight", type=float, default=5.0)
    ap.add_argument("--readme", action="store_true")
    args = ap.parse_args()
    if args.readme:
        payload = json.loads((RESULTS / f"{NAME}.json").read_text())
        plot(payload, RESULTS / f"{NAME}.png")
        readme(payload)
        return
    log_path = RESULTS / f"{NAME}.log"
    RESULTS.mkdir(exist_ok=True)
    logf = open(log_path, "w")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    model, params0 = train_or_load(args.run, args.train)
    train_ds, _, test_ds = splits()
    R0, V0, mass, system, fmax = initial_conditions(model, params0, replicas=8, seed=0)
    log(f"model minimum: max force {fmax:.1e} eV/Å")
    nu_fn = bend_observable(model, R0, V0, mass, system)
    before = summary(model, params0, test_ds, nu_fn, seed=1)
    log(f"before: {json.dumps({k: v for k, v in before.items() if k != 'check'})}")
    t0 = time.perf_counter()
    params, history = fit(model, params0, train_ds, nu_fn, steps=args.steps, lr=args.lr,
                          data_weight=args.data_weight, log=log)
    fit_s = time.perf_counter() - t0
    after = summary(model, params, test_ds, nu_fn, seed=1)
    log(f"after: {json.dumps({k: v for k, v in after.items() if k != 'check'})}")
    e_ratio = after["energy_rmse_meV"] / before["energy_rmse_meV"]
    f_ratio = after["force_rmse_meV_per_A"] / before["force_rmse_meV_per_A"]
    payload = {**machine_info(), "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
               "target_cm": TARGET_CM, "tolerance_cm": TOL_CM, "band_cm": BAND, "steps": args.steps, "lr": args.lr,
               "data_weight": args.data_weight, "fit_seconds": fit_s, "before": before, "after": after,
               "history": history, "energy_ratio": e_ratio, "force_ratio": f_ratio,
               "target_met": bool(abs(after["nu_fit_cm"] - TARGET_CM) <= TOL_CM),
               "data_kept": bool(e_ratio <= 1 + DATA_TOL and f_ratio <= 1 + DATA_TOL)}
    save(NAME, payload)
    plot(payload, RESULTS / f"{NAME}.png")
    readme(payload)
    from qdyn import checkpoint

    checkpoint.save_params(args.run / "params_fitted.msgpack", params)
    log(f"target met: {payload['target_met']}, data kept: {payload['data_kept']} (E ×{e_ratio:.3f}, F ×{f_ratio:.3f})")


if __name__ == "__main__":
    main()
