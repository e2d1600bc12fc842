"""``qdyn namd`` from the command line, and the descriptor Hessian it relies on."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.models import bpnn, multistate
from qdyn.system import System

CAH2 = np.array([[0.0, 0.0, 0.0], [2.05, 0.0, 0.0], [-1.55, 1.35, 0.0]])


@pytest.fixture
def multistate_run(tmp_path, write_run):
    """A finished run directory ``tmp_path / "run"`` holding a tiny untrained 2-state CaH2
    model whose diabats are a ground state plus a constant 2.5 eV excitation (so S1 lies well
    above S0)."""
    model = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", hidden=(8,), n_radial=4, zetas=(1.0,))
    params = model.init(jax.random.PRNGKey(1))
    params["state_offset"] = jnp.asarray([0.0, 2.5])
    return write_run(tmp_path / "run", model, params)


def _text(result):
    return " ".join(result.output.replace("│", " ").split())  # rich wraps messages in a box


def test_qdyn_namd_runs_conserves_energy_and_writes_outputs(tmp_path, multistate_run):
    out = tmp_path / "namd"
    r = CliRunner().invoke(app, ["namd", "--model", str(tmp_path / "run"), "--replicas", "8", "--initial-state", "1",
                                 "--sampling", "wigner", "--dt", "0.2", "--steps", "40", "--stride", "10",
                                 "--substeps", "10", "--decoherence", "edc", "--frustrated", "reverse",
                                 "--seed", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "populations.png").stat().st_size > 10_000
    s = json.loads((out / "namd.json").read_text())
    assert s["settings"]["n_traj"] == 8 and s["settings"]["frustrated"] == "reverse"
    pops = s["populations"]
    np.testing.assert_allclose(pops["time_fs"], np.arange(5) * 2.0)
    # vertical excitation: everything starts on S1, and fractions and |c|² stay normalised
    np.testing.assert_allclose(np.asarray(pops["active_fraction"])[:, 0], [0.0, 1.0])
    np.testing.assert_allclose(np.asarray(pops["active_fraction"]).sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(pops["coefficient_population"]).sum(axis=0), 1.0, atol=1e-10)
    # the start is a relaxed S0 minimum of this model, and S1 (diabatic offset 2.5 eV) lies
    # well above it there
    gs = s["ground_state_minimum"]
    E = gs["adiabatic_energies_eV"]
    np.testing.assert_allclose(gs["vertical_excitation_eV"], E[1] - E[0], rtol=1e-12)
    assert gs["vertical_excitation_eV"] > 1.0, gs
    # Wigner sampling gave the nuclei zero-point motion, and velocity Verlet on S1 conserves
    # total energy over 8 fs (Verlet error at dt = 0.2 fs, far below the vibrational energy)
    ec = s["energy_conservation"]["max_abs_dE_per_traj_eV"]
    assert 0.0 < ec["max"] < 5e-3, ec
    assert s["hops"]["accepted"] <= s["hops"]["attempted"]


def test_qdyn_namd_refuses_bad_input(tmp_path, multistate_run, write_run):
    run = str(tmp_path / "run")
    r = CliRunner().invoke(app, ["namd", "--model", run, "--initial-state", "2"])
    assert r.exit_code != 0 and "--initial-state must be in [0, 1]" in _text(r), _text(r)
    r = CliRunner().invoke(app, ["namd", "--model", run, "--sampling", "husimi"])
    assert r.exit_code != 0 and "--sampling must be one of" in _text(r)
    r = CliRunner().invoke(app, ["namd", "--model", run, "--frustrated", "bounce"])
    assert r.exit_code != 0 and "--frustrated must be one of" in _text(r)
    r = CliRunner().invoke(app, ["namd", "--model", run, "--steps", "15", "--stride", "10"])
    assert r.exit_code != 0 and "multiple of --stride" in _text(r)
    r = CliRunner().invoke(app, ["namd", "--model", run, "--sampling", "boltzmann", "--temperature", "0",
                                 "--replicas", "2", "--steps", "0", "--out", str(tmp_path / "b")])
    assert r.exit_code != 0 and "boltzmann sampling needs temperature_K > 0" in _text(r), _text(r)
    r = CliRunner().invoke(app, ["namd", "--model", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "not a finished qdyn run" in _text(r)
    single = bpnn.build(species=(1, 20), hidden=(8,))
    write_run(tmp_path / "single", single, single.init(jax.random.PRNGKey(0)))
    r = CliRunner().invoke(app, ["namd", "--model", str(tmp_path / "single")])
    assert r.exit_code != 0 and "single-state model" in _text(r), _text(r)


def test_multistate_hessian_is_finite_and_symmetric():
    # normal-mode sampling needs the Hessian of an adiabat; with ζ = 1 angular terms the
    # descriptor's (1 + λ cos θ)^ζ at cos θ = ±1 (j = k, or a linear triple) once gave NaN
    model = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", hidden=(8,), n_radial=4, zetas=(1.0,))
    params = model.init(jax.random.PRNGKey(1))
    system = System.create(["Ca", "H", "H"])
    linear = np.array([[0.0, 0.0, 0.0], [2.05, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    energy = lambda x: model.apply(params, x, system)  # noqa: E731
    hessian, gradient = jax.jit(jax.hessian(energy)), jax.jit(jax.grad(energy))  # compiled once for both geometries
    for R in (CAH2, linear):
        H = np.asarray(hessian(jnp.asarray(R))).reshape(9, 9)
        assert np.isfinite(H).all()
        np.testing.assert_allclose(H, H.T, atol=1e-10)
        # non-trivial, and equal to a central difference of the analytic gradient
        assert np.abs(H).max() > 1e-3
        v = np.random.default_rng(0).normal(size=R.shape)
        h = 1e-5
        fd = (np.asarray(gradient(jnp.asarray(R + h * v))) - np.asarray(gradient(jnp.asarray(R - h * v)))).ravel() / (2 * h)
        np.testing.assert_allclose(H @ v.ravel(), fd, rtol=1e-5, atol=1e-7)


def test_exponential_fit_recovers_lifetime():
    from qdyn.namd.report import fit_exponential_decay

    t = np.linspace(0.0, 500.0, 101)
    p = 0.2 + 0.8 * np.exp(-t / 120.0) + 0.01 * np.random.default_rng(0).normal(size=t.size)
    p[0] = 1.0
    fit = fit_exponential_decay(t, p)
    np.testing.assert_allclose([fit["tau_fs"], fit["p_inf"]], [120.0, 0.2], rtol=0.05, atol=0.01)
    assert fit["tau_std_fs"] < 10.0
    # a population that stays put is not fitted
    assert fit_exponential_decay(t, np.full(t.size, 0.99)) is None


def test_bootstrap_decay_time_spread_matches_independent_ensembles():
    """Bootstrap over trajectories gives the spread that independent ensembles of the same
    size show (synthetic hops: exponential with τ = 100 fs, 30 % never hop)."""
    from qdyn.namd.report import bootstrap_decay, fit_exponential_decay

    t = np.linspace(0.0, 400.0, 81)
    rng = np.random.default_rng(1)

    def ensemble(n=300):
        hop = np.where(rng.random(n) < 0.7, rng.exponential(100.0, n), np.inf)
        return (t[:, None] < hop[None, :]).astype(int)  # [F, N], 1 = still on S1

    spread = np.std([fit_exponential_decay(t, ensemble().mean(axis=1))["tau_fs"] for _ in range(30)])
    boot = bootstrap_decay(t, ensemble(), state=1, n_boot=100, seed=0)
    assert boot["n_failed"] == 0 and boot["tau_p2_5_fs"] < boot["tau_fs"] < boot["tau_p97_5_fs"]
    assert abs(boot["tau_fs"] - 100.0) < 4 * spread
    assert 0.5 * spread < boot["tau_std_fs"] < 2.0 * spread, (boot["tau_std_fs"], spread)
