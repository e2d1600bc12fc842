"""A short MD run of a trained model, its vibrational spectrum and harmonic frequencies.

Called at the end of ``qdyn quickstart`` and by ``qdyn md --spectrum``: relax the model's
reference molecule (ASE BFGS on the qdyn calculator), compute harmonic frequencies from the
model's own Hessian, run NVE replicas at low temperature with rotation removed, and compare
the peaks of the velocity-autocorrelation spectrum with the harmonic frequencies.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from ..data.io import atomic_write_text
from ..models.base import EnergyModel
from ..validation import QdynInputError
from . import analysis
from .adapters import model_energy_fn
from .integrators import masses
from .run import run_md


def reference_structure(model: EnergyModel):
    """(R [n, 3] Å, System) of the molecule a model was built for."""
    from .. import structures

    template = model.config.get("template")
    by_template = {"H2O": structures.water, "LiH": structures.lih, "water_dimer": structures.water_dimer}
    if template in by_template:
        return by_template[template]()
    if tuple(sorted(model.species)) == (1, 8):
        return structures.water()
    if tuple(sorted(model.species)) == (1, 3):
        return structures.lih()
    raise QdynInputError(f"no reference molecule for {model.name} (species {model.species}); pass a structure")


def relax(model: EnergyModel, params, R, system, *, fmax: float = 1e-3, steps: int = 300):
    """Positions [n, 3] Å of the nearest minimum (ASE BFGS on the qdyn calculator) and the
    final max force [eV/Å]."""
    from ase import Atoms
    from ase.optimize import BFGS

    from .ase_calculator import QdynCalculator

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
        model, params: the trained model.
        out_dir: output directory (the trajectory goes to ``out_dir/trajectory.*``).
        small: tiny sizes for tests and CI (4 replicas × 2,000 steps instead of 32 × 8,000).
        seed: PRNG seed.
        R, system: start structure (default: the model's reference molecule).
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
    res = run_md(energy_fn, params, R_min, system, ensemble="nve", dt_fs=dt_fs, n_steps=steps, stride=stride,
                 frames_per_block=100, temperature_K=temperature_K, remove_rotation=True, replicas=replicas,
                 store_replicas=replicas, key=jax.random.PRNGKey(seed), out_dir=out,
                 trajectory_formats=("extxyz", "h5md"), progress=progress)
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
