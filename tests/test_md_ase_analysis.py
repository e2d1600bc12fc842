"""ASE calculator, trajectories readable by ASE and qdyn.data, spectrum vs Hessian, RDF."""

import jax
import numpy as np
import pytest

from qdyn import md, testing
from qdyn.md import analysis
from qdyn.md.potentials import spring_network
from qdyn.models import bpnn
from qdyn.models.base import energy_and_forces
from qdyn.structures import water, water_dimer


@pytest.fixture(scope="module")
def bp():
    model = bpnn.build(species=(1, 8), hidden=(8,))
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    return model, params


def _atoms(R, system):
    from ase import Atoms

    return Atoms(numbers=np.asarray(system.species), positions=R)


def test_ase_calculator_matches_model_and_batches(bp):
    from qdyn.md.ase_calculator import QdynCalculator

    model, params = bp
    R, system = water_dimer()
    atoms = _atoms(R, system)
    atoms.calc = QdynCalculator(model, params)
    E, F = energy_and_forces(model, params, R, system)
    np.testing.assert_allclose(atoms.get_potential_energy(), float(E), rtol=0, atol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), np.asarray(F), rtol=0, atol=1e-12)
    assert np.abs(atoms.get_forces()).max() > 1e-4  # non-trivial
    rng = np.random.default_rng(0)
    images = []
    for _ in range(5):
        a = atoms.copy()
        a.positions += 0.05 * rng.normal(size=a.positions.shape)
        images.append(a)
    Eb, Fb = atoms.calc.batch(images, chunk=2)
    for a, e, f in zip(images, Eb, Fb):
        e1, f1 = energy_and_forces(model, params, a.positions, system)
        np.testing.assert_allclose(e, float(e1), atol=1e-12)
        np.testing.assert_allclose(f, np.asarray(f1), atol=1e-12)


def test_ase_optimizer_and_dynamics_run_with_the_calculator(bp):
    from ase import units as ase_units
    from ase.md.verlet import VelocityVerlet
    from ase.optimize import BFGS

    from qdyn.md.ase_calculator import QdynCalculator

    model, params = bp
    R, system = water()
    atoms = _atoms(R, system)
    atoms.calc = QdynCalculator(model, params)
    e0 = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=30)
    assert atoms.get_potential_energy() < e0
    atoms2 = _atoms(R, system)
    atoms2.calc = QdynCalculator(model, params)
    atoms2.set_velocities(np.random.default_rng(1).normal(scale=0.01, size=(3, 3)))
    etot0 = atoms2.get_total_energy()
    VelocityVerlet(atoms2, timestep=0.2 * ase_units.fs).run(20)
    assert abs(atoms2.get_total_energy() - etot0) < 1e-3


def test_trajectories_are_readable_by_ase_and_qdyn(tmp_path):
    import ase.io
    from ase import units as ase_units

    from qdyn import data
    from qdyn.md.trajectory import read_h5md

    R, system = water()
    energy_fn, init = spring_network(R)
    res = md.run_md(energy_fn, init(k=5.0), R, system,
                    md.MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=40, temperature_K=300.0),
                    output=md.MDOutput(out_dir=tmp_path, stride=10, progress=None))
    frames = ase.io.read(tmp_path / "trajectory.xyz", ":")
    assert len(frames) == 5  # the initial state at t = 0, then every 10 steps
    assert frames[0].info["time"] == 0.0 and frames[1].info["time"] == 5.0
    np.testing.assert_allclose(frames[0].positions, R, atol=1e-12)
    np.testing.assert_allclose(res.time_fs, [0.0, 5.0, 10.0, 15.0, 20.0])
    np.testing.assert_allclose(frames[-1].positions, res.position[-1, 0], atol=1e-8)
    np.testing.assert_allclose(frames[-1].arrays["vel"], res.velocity[-1, 0], rtol=1e-8, atol=1e-14)
    # ASE sees the velocities (its own units: Å per ASE time unit), not zeros
    v_ase = frames[-1].get_velocities() * ase_units.fs
    assert np.abs(v_ase).max() > 1e-4
    # (1e-8: ASE's time unit is CODATA 2014, qdyn's 2018)
    np.testing.assert_allclose(v_ase, res.velocity[-1, 0], rtol=1e-8, atol=1e-14)
    ds = data.read(tmp_path / "trajectory.xyz")
    assert ds.n_frames == 5
    np.testing.assert_allclose(ds.E, res.potential[:, 0], atol=1e-10)
    h = read_h5md(tmp_path / "trajectory.h5")
    np.testing.assert_allclose(h["position"], res.position[:, 0], atol=1e-12)
    assert (tmp_path / "md.json").exists() and (tmp_path / "checkpoint.npz").exists()


def test_spectrum_peaks_match_harmonic_frequencies():
    R, system = water()
    energy_fn, init = spring_network(R)
    params = init(k=20.0)
    mass = md.masses(system)
    harm = analysis.harmonic_frequencies(energy_fn, params, R, system, mass)
    assert harm.shape == (3,) and np.all(harm > 500)
    # low temperature, rotation removed: the dynamics is nearly harmonic
    res = md.run_md(energy_fn, params, R, system,
                    md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=4000, temperature_K=30.0, replicas=8,
                                  remove_rotation=True),
                    output=md.MDOutput(stride=4, frames_per_block=100, store_replicas=8, progress=None))
    assert res.dof == 3
    nu, inten = analysis.vibrational_spectrum(res.velocity, mass, 2.0)
    peaks = analysis.spectrum_peaks(nu, inten, n_peaks=3)
    np.testing.assert_allclose(peaks, harm, rtol=0.02)
    drift = analysis.energy_drift(res.time_fs, res.total, n_atoms=3)
    assert abs(drift["slope_eV_per_ps_per_atom"]) < 1e-4


def test_harmonic_frequency_of_a_diatomic_is_analytic():
    from qdyn.system import System

    R = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.6]])
    system = System.create(["Li", "H"])
    energy_fn, init = spring_network(R)
    k = 7.0
    mass = md.masses(system)
    (w,) = analysis.harmonic_frequencies(energy_fn, init(k=k), R, system, mass)
    from qdyn import units

    mu = mass[0] * mass[1] / mass.sum()
    expect = np.sqrt(k / mu) / units.TIME_UNIT_FS / (2 * np.pi * units.SPEED_OF_LIGHT_CM_S * 1e-15)
    np.testing.assert_allclose(w, expect, rtol=1e-10)


def test_rdf_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    L = np.array([10.0, 10.0, 10.0])
    X = rng.uniform(0, 10, size=(20, 200, 3))
    r, g = analysis.radial_distribution(X, np.full(200, 8), L, n_bins=20)
    assert abs(g[5:].mean() - 1.0) < 0.05
