"""``qdyn namd``: surface hopping after vertical excitation, on a trained multistate model.

Registered by :mod:`qdyn.cli.app` through :func:`register`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from .parallel_opts import DEVICES_OPT, devices_value

_SAMPLINGS = ("wigner", "boltzmann")
_DECOHERENCE = ("edc", "none")
_FRUSTRATED = ("keep", "reverse", "gradV")


def start_structure(model, structure: Optional[Path], frame: int, length_unit: Optional[str] = None):
    """(R [A, 3] Å, System) to relax from: ``structure`` if given, else the model's reference
    molecule; for a Ca/H model without one, the lowest-S0 frame of the shipped CaH2 data."""
    from ..structures import load_structure, reference_structure
    from ..validation import QdynInputError

    if structure is not None:
        R, system = load_structure(structure, frame=frame, length_unit=length_unit)
        model.check(R, system)
        return R, system
    try:
        return reference_structure(model)
    except QdynInputError:
        if tuple(sorted(model.species)) != (1, 20):
            raise QdynInputError(f"no reference molecule for {model.name} (species {tuple(model.species)}); "
                                 "pass --structure") from None
    import numpy as np

    from ..data import load_shipped

    ds = load_shipped("CaH2")
    return ds.to_system(int(np.argmin(ds.E_states[:, 0])))


def _echo_progress(info: dict) -> None:
    pops = " ".join(f"{f:.2f}" for f in info["active_fraction"])
    typer.echo(f"step {info['step']:>9d} / {info['n_steps']}  t = {info['time_ps']:8.4f} ps  on surfaces {pops}",
               err=True)


def namd(
    model: Path = typer.Option(..., "--model", help="A finished training run of a multistate model (qdyn train --out)."),
    structure: Optional[Path] = typer.Option(None, "--structure",
                                             help="Start geometry to relax: a file, shipped:NAME or a preset "
                                                  "(water, lih, water_dimer); default: the model's reference "
                                                  "molecule, CaH2 for Ca/H models."),
    frame: int = typer.Option(0, "--frame", help="Frame of --structure."),
    length_unit: Optional[str] = typer.Option(None, "--length-unit", help="Length unit of --structure if the file "
                                                                           "does not record it (Angstrom, Bohr)."),
    replicas: int = typer.Option(256, "--replicas", help="Number of trajectories (replicas, as in qdyn md)."),
    initial_state: int = typer.Option(1, "--initial-state", help="Adiabatic state excited vertically (0 = ground)."),
    sampling: str = typer.Option("wigner", "--sampling", help="wigner (harmonic, zero-point motion included) or "
                                                              "boltzmann (classical, needs --temperature > 0)."),
    temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature [K]."),
    dt: float = typer.Option(0.25, "--dt", help="Nuclear time step [fs]."),
    steps: int = typer.Option(2000, "--steps", help="Number of steps (a multiple of --stride)."),
    stride: int = typer.Option(10, "--stride", help="Steps between recorded frames."),
    substeps: int = typer.Option(20, "--substeps", help="Electronic substeps per nuclear step."),
    decoherence: str = typer.Option("edc", "--decoherence", help="edc (Granucci–Persico) or none."),
    frustrated: str = typer.Option("keep", "--frustrated", help="Frustrated hops: keep, reverse or gradV."),
    seed: int = typer.Option(0, "--seed", help="Random seed of sampling and hops."),
    out: Path = typer.Option(Path("runs/namd"), "--out", help="Output directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the surface-hopping run already in --out."),
    devices: Optional[str] = DEVICES_OPT,
):
    """Relax the ground state, sample it, excite vertically and run fewest-switches surface
    hopping; writes namd.json and populations.png."""
    devices = devices_value(devices)  # first: on CPU the device count is set before anything starts JAX
    import jax
    import numpy as np
    from rich.console import Console

    from .. import elements
    from ..data.io import atomic_write_text
    from ..namd import minimize_adiabatic, normal_mode_sampler, run_fssh
    from ..md import BlowUpError, diabatic_fn
    from ..namd import report
    from ..parallel import make_mesh, process_out_dir
    from ..rundir import RunDirError, claim
    from ..train import load_run
    from ..validation import QdynInputError

    console = Console(stderr=True)
    for name, value, allowed in (("--sampling", sampling, _SAMPLINGS), ("--decoherence", decoherence, _DECOHERENCE),
                                 ("--frustrated", frustrated, _FRUSTRATED)):
        if value not in allowed:
            raise typer.BadParameter(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if replicas < 1:
        raise typer.BadParameter(f"--replicas must be ≥ 1, got {replicas}")
    if not dt > 0:
        raise typer.BadParameter(f"--dt must be > 0 fs, got {dt}")
    if stride < 1 or steps < 0 or steps % stride:
        raise typer.BadParameter(f"--steps ({steps}) must be a non-negative multiple of --stride ({stride})")
    if substeps < 1:
        raise typer.BadParameter(f"--substeps must be ≥ 1, got {substeps}")
    try:  # refused before anything loads or compiles
        mesh = make_mesh(devices)
        from ..parallel import check_divisible

        check_divisible(replicas, mesh, "trajectories", "--replicas")
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    out = process_out_dir(out)  # multi-host: process k > 0 writes out.process<k>
    try:
        claim(out, "surface-hopping", overwrite=overwrite)
    except RunDirError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    try:
        m, params, _ = load_run(model)
    except Exception as exc:  # a clear one-line message instead of a traceback
        raise typer.BadParameter(f"--model {model}: {exc}") from None
    if not m.is_multistate:
        raise typer.BadParameter(f"--model {model}: {m.name} is a single-state model; surface hopping needs a "
                                 "multistate run (model.family = multistate)")
    if not 0 <= initial_state < m.n_states:
        raise typer.BadParameter(f"--initial-state must be in [0, {m.n_states - 1}] for this {m.n_states}-state "
                                 f"model, got {initial_state}")
    timings = {}
    t_all = time.perf_counter()
    try:
        R, system = start_structure(m, structure, frame, length_unit)
        W_fn = diabatic_fn(m, system)
        Z = np.asarray(system.species)
        t = time.perf_counter()
        with console.status("relaxing the ground state"):
            R0 = minimize_adiabatic(W_fn, params, np.asarray(R), state=0)
            E_min = np.asarray(m.adiabatic(params, R0, system))
        timings["minimize_s"] = time.perf_counter() - t
        console.print(f"S0 minimum: vertical excitation S0→S{initial_state} = {E_min[initial_state] - E_min[0]:.3f} eV")
        t = time.perf_counter()
        sampler = normal_mode_sampler(W_fn, params, R0, Z, state=0, distribution=sampling, temperature_K=temperature)
        timings["normal_modes_s"] = time.perf_counter() - t
        t = time.perf_counter()
        res = run_fssh(W_fn, params, masses=[elements.mass(int(z)) for z in Z], dt_fs=dt, n_steps=steps,
                       key=jax.random.PRNGKey(seed), initial_state=initial_state, replicas=replicas, sampler=sampler,
                       stride=stride, n_substeps=substeps, decoherence=decoherence, frustrated=frustrated,
                       progress=_echo_progress, mesh=mesh)
        timings["fssh_s"] = time.perf_counter() - t
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    except BlowUpError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    timings["total_s"] = time.perf_counter() - t_all
    timings["traj_steps_per_s"] = replicas * steps / timings["fssh_s"] if timings["fssh_s"] > 0 else None
    fit = report.fit_exponential_decay(res.time_fs, res.active_fraction[:, initial_state]) if initial_state else None
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "settings": {"model": str(model), "model_name": m.name, "n_states": m.n_states, "n_traj": replicas,
                     "initial_state": initial_state, "sampling": sampling, "temperature_K": temperature,
                     "dt_fs": dt, "steps": steps, "stride": stride, "substeps": substeps,
                     "decoherence": decoherence, "frustrated": frustrated, "seed": seed,
                     "structure": str(structure) if structure is not None else "default"},
        "ground_state_minimum": {"species": Z.tolist(), "R_A": np.asarray(R0).tolist(),
                                 "adiabatic_energies_eV": E_min.tolist(),
                                 "vertical_excitation_eV": float(E_min[initial_state] - E_min[0])},
        "populations": report.populations_dict(res),
        "lifetime_fit": fit,
        "hops": report.hop_summary(res),
        "energy_conservation": report.energy_conservation(res),
        "timings": timings,
    }
    atomic_write_text(out / "namd.json", json.dumps(summary, indent=2))
    report.plot_populations(res, out / "populations.png", fit=fit, fit_state=initial_state,
                            title=f"{m.name}: FSSH from S{initial_state}, {replicas} trajectories")
    typer.echo(json.dumps({"out": str(out), "final_active_fraction": res.active_fraction[-1].tolist(),
                           "hops": res.hop_statistics(), "lifetime_fit": fit,
                           "max_abs_dE_eV": summary["energy_conservation"]["max_abs_dE_per_traj_eV"]["max"],
                           "timings": timings}, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``namd`` to the qdyn app."""
    app.command("namd")(namd)
