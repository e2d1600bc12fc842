"""Quickstart workflows, apart from the library core.

:func:`run` is ``qdyn quickstart``, the main job, end to end on one machine with no network:

1. Symmetry: build the H2O siVQLM and its generic control, evaluate them on a bending scan
   and on randomly rotated/reflected copies, run the physics checks of :mod:`qdyn.testing`.
2. Train: fit the siVQLM to the shipped B3LYP/def2-SVP water data (staged: scale/shift
   first, then the circuit), evaluate on held-out frames, write parity plots and learning
   curves.
3. MD: a short NVE run of the trained model (batched replicas), its vibrational spectrum
   next to the harmonic frequencies of the model's own Hessian (:func:`quickstart_md`).

:func:`quickstart_md` is also ``qdyn md --spectrum``: relax the model's reference molecule
(ASE BFGS on the qdyn calculator), compute harmonic frequencies from the model's own
Hessian, run NVE replicas at low temperature with rotation removed, and compare the peaks
of the velocity-autocorrelation spectrum with the harmonic frequencies.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from .data.io import atomic_write_text
from .md import analysis
from .md.adapters import model_energy_fn
from .md.integrators import masses
from .md.run import run_md
from .md.settings import MDOutput, MDSettings
from .models.base import EnergyModel
from .plotting import pyplot, save_figure
from .structures import reference_structure
from .validation import QdynInputError


def _bend_scan(n: int):
    from .structures import water

    angles = np.linspace(85.0, 125.0, n)
    return angles, np.stack([water(angle_deg=a)[0] for a in angles])


def run(*, out: Path, small: bool = False, seed: int = 0) -> dict:
    import jax
    import jax.numpy as jnp
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from . import testing
    from .models import count_params, generic, sivqlm
    from .models.base import batch_energy_and_forces
    from .structures import rattle, water

    console = Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers = 2 if small else 6
    n_scan = 9 if small else 41
    n_rot = 2 if small else 4

    _, system = water()
    models = {
        "siVQLM": sivqlm.build("H2O", layers=layers),
        "generic": generic.build("H2O", layers=layers),
    }
    key = jax.random.PRNGKey(seed)
    params = {
        name: testing.randomize_params(m.init(jax.random.fold_in(key, i)), jax.random.fold_in(key, 100 + i), scale=0.3)
        for i, (name, m) in enumerate(models.items())
    }
    angles, scan = _bend_scan(n_scan)
    rng = np.random.default_rng(seed)
    rotations = [testing.random_orthogonal(jax.random.fold_in(key, 1000 + k), reflection=bool(k % 2))
                 for k in range(n_rot)]
    report: dict = {"models": {}, "small": small, "seed": seed}
    curves: dict = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluating models", total=len(models) * (1 + n_rot))
        for name, model in models.items():
            p = params[name]
            t0 = time.perf_counter()
            E, F = batch_energy_and_forces(model, p, scan, system, chunk=n_scan)
            t_first = time.perf_counter() - t0
            t0 = time.perf_counter()
            batch_energy_and_forces(model, p, scan, system, chunk=n_scan)
            t_steady = time.perf_counter() - t0
            progress.advance(task)
            rotated = []
            for Q in rotations:
                shifted = scan @ Q.T + rng.normal(size=3)
                Er, _ = batch_energy_and_forces(model, p, shifted, system, chunk=n_scan)
                rotated.append(Er)
                progress.advance(task)
            curves[name] = (E, rotated)
            report["models"][name] = {
                "n_params": count_params(p),
                "n_qubits": model.config["n_qubits"],
                "first_call_s": t_first,
                "steady_ms_per_config": 1e3 * t_steady / n_scan,
                "max_energy_change_under_O3_eV": float(max(np.max(np.abs(r - E)) for r in rotated)),
            }

    # Physics checks on one rattled geometry (no accidental symmetry).
    R = jnp.asarray(rattle(water()[0], seed))
    console.print("[bold]physics checks[/bold] (qdyn.testing, float64)")
    checks = testing.check_model(models["siVQLM"], params["siVQLM"], R, system, permutations=[[0, 2, 1]])
    report["models"]["siVQLM"]["checks"] = {
        "O3_energy_error": checks["e3"]["energy_error"],
        "O3_force_error": checks["e3"]["force_error"],
        "permutation_energy_error": checks["perm(0, 2, 1)"]["energy_error"],
        "force_fd_error": checks["forces_fd"]["max_error"],
        "second_order_error": checks["second_order"]["error"],
    }
    dE, dF = testing.invariance_errors(models["generic"], params["generic"], R, system)
    report["models"]["generic"]["checks"] = {"O3_energy_error": dE, "O3_force_error": dF}

    table = Table(title="H2O: siVQLM vs generic control (untrained parameters)")
    for col in ("model", "qubits", "params", "ms/config (E+F)", "max |ΔE| under O(3) [eV]"):
        table.add_column(col)
    for name, r in report["models"].items():
        table.add_row(name, str(r["n_qubits"]), str(r["n_params"]), f"{r['steady_ms_per_config']:.3f}",
                      f"{r['max_energy_change_under_O3_eV']:.2e}")
    console.print(table)

    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, (name, (E, rotated)) in zip(axes, curves.items()):
        ax.plot(angles, E, "k-", lw=2, label="original")
        for k, Er in enumerate(rotated):
            ax.plot(angles, Er, "--", label=f"rotated{' + reflected' if k % 2 else ''} #{k}")
        ax.set_title(f"{name}: energy along the H–O–H bend")
        ax.set_xlabel("H–O–H angle [deg]")
        ax.set_ylabel("E [eV] (untrained)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "invariance_bend_scan.png")

    console.print(f"wrote {out / 'invariance_bend_scan.png'}")

    report["training"] = _train_step(out / "train", small=small, seed=seed, console=console)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    console.print(f"wrote {out / 'report.json'}")
    return report


def _train_step(out: Path, *, small: bool, seed: int, console) -> dict:
    from .train import parse_config, train

    # small: still enough training that the model binds the molecule (MD needs a minimum)
    sizes = {"n_train": 64, "n_val": 8, "n_test": 8} if small else {"n_train": 400, "n_val": 50, "n_test": 50}
    cfg = parse_config({
        # D=16, B=2 (131 parameters): the configuration of benchmarks/accuracy.md, shorter
        "model": {"family": "sivqlm", "template": "H2O", "layers": 3 if small else 16, "blocks": 1 if small else 2},
        "data": {"path": "shipped:H2O", **sizes},
        "epochs": 80 if small else 200, "batch_size": 32, "seed": seed,
        "staged": True, "pretrain_epochs": 8 if small else 20,
        "optim": {"learning_rate": 2e-2}, "checkpoint_every": 10,
    })
    console.print(f"[bold]training[/bold] siVQLM on shipped H2O ({sizes['n_train']} train / {sizes['n_test']} test)")
    res = train(cfg, out, progress=True)
    test = res.metrics["test"]
    console.print(
        f"test: energy MAE {test['energy_mae_meV']:.2f} meV, force MAE {test['force_mae_meV_per_A']:.1f} meV/Å "
        f"({res.metrics['n_params']} parameters, {res.seconds:.0f} s); plots in {out}"
    )
    summary = {"test": test, "n_params": res.metrics["n_params"], "seconds": res.seconds, "run": str(out)}
    summary["md"] = _md_step(res.model, res.params, out.parent / "md", small=small, seed=seed, console=console)
    return summary


def _md_step(model, params, out: Path, *, small: bool, seed: int, console) -> dict:
    console.print("[bold]molecular dynamics[/bold] with the trained siVQLM (NVE, batched replicas)")
    md = quickstart_md(model, params, out, small=small, seed=seed)
    console.print(f"MD summary and spectrum plot in {out}")
    return md


def relax(model: EnergyModel, params, R, system, *, fmax: float = 1e-3, steps: int = 300):
    """Positions [n, 3] Å of the nearest minimum (ASE BFGS on the qdyn calculator) and the
    final max force [eV/Å]."""
    from ase import Atoms
    from ase.optimize import BFGS

    from .md.ase_calculator import QdynCalculator

    atoms = Atoms(numbers=np.asarray(system.species), positions=np.asarray(R))
    atoms.calc = QdynCalculator(model, params)
    try:
        BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)
    except np.linalg.LinAlgError:  # BFGS's Hessian update breaks when an unbound model flies apart
        return atoms.positions.copy(), float("inf")
    return atoms.positions.copy(), float(np.abs(atoms.get_forces()).max())


def quickstart_md(model: EnergyModel, params, out_dir, *, small: bool, seed: int = 0, R=None, system=None,
                  temperature_K: float = 50.0, progress=None) -> dict:
    """Short NVE MD of a trained model; writes ``spectrum.png``, ``energies.png`` and
    ``md_summary.json`` to ``out_dir`` and returns the summary.

    Args:
        model: the trained model.
        params: its parameters.
        out_dir: output directory (the trajectory goes to ``out_dir/trajectory.*``).
        small: tiny sizes for tests and CI (4 replicas × 2,000 steps instead of 32 × 8,000).
        seed: PRNG seed.
        R: start positions [n_atoms, 3] Å (default: the model's reference molecule).
        system: the System of ``R`` (default: the reference molecule's).
        temperature_K: initial temperature [K]; low, so the motion stays near-harmonic
            and the peaks can be compared with the Hessian's frequencies.
        progress: progress callback for :func:`~qdyn.md.run.run_md` (None: silent).

    Returns:
        dict with harmonic frequencies and spectrum peaks [cm⁻¹], their relative
        differences, energy drift, mean temperature, timings and the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if R is None:
        R, system = reference_structure(model)
    R_min, fmax = relax(model, params, R, system)
    def span(x):
        return float(np.max(np.linalg.norm(np.asarray(x)[:, None] - np.asarray(x)[None], axis=-1)))

    # an unbound model "relaxes" by flying apart until its forces vanish beyond the cutoff
    if not (np.all(np.isfinite(R_min)) and fmax < 0.05 and span(R_min) < 1.5 * span(R) + 1.0):
        raise QdynInputError(f"{model.name}: relaxation found no minimum near the start structure (max force "
                             f"{fmax:.3g} eV/Å, size {span(R_min):.3g} Å from {span(R):.3g} Å); is the model trained?")
    energy_fn = model_energy_fn(model.apply)
    mass = masses(system)
    harm = analysis.harmonic_frequencies(energy_fn, params, R_min, system, mass)
    replicas, steps = (4, 2000) if small else (32, 8000)
    dt_fs, stride = 0.5, 4
    res = run_md(energy_fn, params, R_min, system,
                 MDSettings(ensemble="nve", dt_fs=dt_fs, n_steps=steps, temperature_K=temperature_K, replicas=replicas,
                            remove_rotation=True),
                 output=MDOutput(out_dir=out, trajectory_formats=("extxyz", "h5md"), stride=stride,
                                 frames_per_block=100, store_replicas=replicas, progress=progress),
                 key=jax.random.PRNGKey(seed))
    nu, inten = analysis.vibrational_spectrum(res.velocity, mass, dt_fs * stride)
    real = harm[harm > 0]
    peaks = analysis.spectrum_peaks(nu, inten, n_peaks=len(real))
    rel = []
    for p in peaks:  # each peak against its nearest harmonic frequency
        w = real[np.argmin(np.abs(real - p))]
        rel.append(float((p - w) / w))
    files = {
        "spectrum": str(analysis.plot_spectrum(nu, inten, out / "spectrum.png", harmonic=list(real), peaks=list(peaks),
                                               title=f"{model.name}: MD spectrum vs harmonic")),
        "energies": str(analysis.plot_energies(res, out / "energies.png")),
        "trajectory_xyz": str(out / "trajectory_r0000.xyz") if replicas > 1 else str(out / "trajectory.xyz"),
        "trajectory_h5md": str(out / "trajectory.h5"),
    }
    summary = {
        "model": model.name, "relaxed_max_force_eV_per_A": fmax, "harmonic_cm-1": [float(x) for x in harm],
        "spectrum_peaks_cm-1": [float(x) for x in peaks], "peak_vs_harmonic_rel": rel,
        "replicas": replicas, "steps": steps, "dt_fs": dt_fs, "initial_temperature_K": temperature_K,
        "mean_temperature_K": float(res.temperature.mean()),
        "drift": analysis.energy_drift(res.time_fs, res.total, n_atoms=R_min.shape[0]),
        "timings": res.timings, "files": files,
    }
    atomic_write_text(out / "md_summary.json", json.dumps(summary, indent=2))
    return summary
