"""Fewest-switches surface hopping: conservation laws, reproducibility, frustrated hops, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import elements, units
from qdyn.namd import analytic, fssh, minimize_adiabatic, normal_mode_sampler, run_fssh, tully
from qdyn.namd.sampling import sample_batch, velocity_from_wavenumber
from qdyn.namd.run import _block, init_batch, make_fssh
from qdyn.validation import QdynInputError


@pytest.fixture(scope="module")
def triatomic():
    W, p, Z, R = analytic.triatomic(2)
    R0 = minimize_adiabatic(W, p, R)
    masses = np.array([elements.mass(z) for z in Z])
    return W, p, Z, R0, masses


@pytest.mark.slow
def test_energy_conserved_across_hops_and_shrinks_with_dt(triatomic):
    W, p, Z, R0, masses = triatomic
    R, V = sample_batch(normal_mode_sampler(W, p, R0, Z), jax.random.split(jax.random.PRNGKey(0), 8))
    drift, hops = {}, {}
    for dt in (0.1, 0.05):
        res = run_fssh(W, p, masses=masses, dt_fs=dt, n_steps=int(round(25 / dt)), key=jax.random.PRNGKey(1),
                       initial_state=1, R0=R, V0=V, stride=1, frames_per_block=250, progress=None,
                       keep_positions=dt == 0.05)
        drift[dt] = np.abs(res.total - res.total[0]).max(axis=0)  # per trajectory, every step
        hops[dt] = res.hop_statistics()
        # populations: Σ|c_i|² = 1 in every trajectory (the ensemble mean of a constant 1)
        np.testing.assert_allclose(res.coefficient_population.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(res.active_fraction.sum(axis=1), 1.0, atol=0)
    # the recorded energies of every state: the active one is the potential; positions when asked
    np.testing.assert_array_equal(np.take_along_axis(res.energies, res.active[..., None], axis=-1)[..., 0],
                                  res.potential)
    assert np.all(np.diff(res.energies, axis=-1) >= 0)
    assert res.positions.shape == (res.active.shape[0], *R.shape)
    np.testing.assert_array_equal(res.positions[0], R)
    # non-trivial: trajectories really hopped (energy conservation *across* hops is tested)
    assert hops[0.05]["accepted"] >= 4 and hops[0.1]["accepted"] >= 4, hops
    # velocity Verlet: error ∝ dt²; hops rescale the velocity exactly, adding nothing
    np.testing.assert_array_less(drift[0.05].max(), 5e-3)
    ratio = np.median(drift[0.1]) / np.median(drift[0.05])
    assert 2.5 < ratio < 6.5, (ratio, drift)


def test_batch_equals_single_trajectories():
    # Tully model 1 (cheap to compile): packets started at -3 bohr with k = 20 cross the
    # coupling region within the 100 steps, so hops are attempted and the random stream used
    W, p = tully.model(1)
    sim = make_fssh(W, (float(tully.MASS_AMU),), 5 * units.AU_TIME_FS, 10, "edc", float(units.HARTREE_EV * 0.1),
                    "keep", 1e-4)
    sampler = tully.sampler(20.0, -3.0)
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    block = _block(sim, 25, 4, False)
    batch, _ = block(init_batch(sim, p, keys, active=0, sampler=sampler), p)
    assert int(np.asarray(batch.attempted).sum()) > 0  # the random stream was used
    assert len(np.unique(np.asarray(batch.R))) == 4  # different keys, different trajectories
    for i in (0, 3):
        single, _ = block(init_batch(sim, p, keys[i:i + 1], active=0, sampler=sampler), p)
        for name in ("R", "V", "c"):
            np.testing.assert_allclose(getattr(single, name)[0], getattr(batch, name)[i], rtol=1e-12, atol=1e-12)
        for name in ("active", "attempted", "accepted", "frustrated"):
            assert int(getattr(single, name)[0]) == int(getattr(batch, name)[i])


@pytest.mark.parametrize("policy", ["keep", "reverse"])
def test_frustrated_hop_policies(policy):
    # Tully model 1 with a stronger, narrower coupling (params are call-time arguments) at
    # k = 8.5 (kinetic energy 0.018 hartree): the gap exceeds that kinetic energy except in
    # a narrow window, so many upward hops are frustrated
    W, p = tully.model(1)
    p = dict(p, C=jnp.asarray(0.02), D=jnp.asarray(4.0))
    sim = fssh(W, np.array([tully.MASS_AMU]), 5 * units.AU_TIME_FS, frustrated=policy, decoherence="none")
    v0 = velocity_from_wavenumber(float(tully.wavenumber_per_angstrom(8.5)), tully.MASS_AMU)
    x0 = float(tully.bohr(-4.0))

    @jax.jit
    @jax.vmap
    def history(key):
        s = sim.init(key, jnp.array([x0]), jnp.array([v0]), params=p, active=0)

        def one(s, _):
            s = sim.step(s, params=p)
            return s, (s.V[0], s.frustrated, s.accepted, sim.observe(s).total)

        return sim.observe(s).total, jax.lax.scan(one, s, None, length=400)[1]

    e0, (V, frus, acc, total) = history(jax.random.split(jax.random.PRNGKey(1), 32))
    frus, V = np.asarray(frus), np.asarray(V)
    traj = int(np.argmax(frus[:, -1] > 0))
    assert frus[traj, -1] > 0, "no trajectory attempted a hop: the test would be vacuous"
    i = int(np.argmax(frus[traj] > 0))  # the step of the first frustrated hop
    flipped = V[traj, i] * V[traj, i - 1] < 0
    assert flipped == (policy == "reverse")
    # reversal keeps the kinetic energy: total energy stays within the Verlet error (dt = 5 a.u.)
    np.testing.assert_allclose(np.asarray(total), np.broadcast_to(np.asarray(e0)[:, None], total.shape), atol=5e-4)


def test_wigner_and_boltzmann_sampling_energies(triatomic):
    W, p, Z, R0, masses = triatomic
    keys = jax.random.split(jax.random.PRNGKey(3), 4000)
    kin = jax.vmap(lambda V: 0.5 * units.AMU_A2_FS2_EV * jnp.sum(masses[:, None] * V * V))
    # Wigner, 0 K: ⟨KE⟩ = Σ ħω/4 over the three vibrations (zero-point energy / 2)
    R, V = sample_batch(normal_mode_sampler(W, p, R0, Z, distribution="wigner"), keys)
    H = jax.jit(jax.hessian(lambda r: jnp.linalg.eigvalsh(W(p, r))[0]))(jnp.asarray(R0)).reshape(9, 9)
    inv = np.repeat(1 / np.sqrt(masses), 3)
    w2 = np.linalg.eigvalsh(np.asarray(H) * inv[:, None] * inv[None, :])[-3:]
    zpe = float(np.sum(units.HBAR_EV_S / (units.TIME_UNIT_FS * 1e-15) * np.sqrt(w2))) / 2
    ke = np.asarray(kin(V))
    np.testing.assert_allclose(ke.mean(), zpe / 2, rtol=4 * ke.std() / np.sqrt(len(ke)) / ke.mean())
    assert 0.1 < zpe < 1.0  # eV: a water-like molecule's zero-point energy (non-trivial check)
    # Boltzmann at 300 K: ⟨KE⟩ = (3N − 6)/2 kT (translation and rotation removed)
    R, V = sample_batch(normal_mode_sampler(W, p, R0, Z, distribution="boltzmann", temperature_K=300.0), keys)
    ke = np.asarray(kin(V))
    kT = units.temperature_to_energy(300.0)
    np.testing.assert_allclose(ke.mean(), 1.5 * kT, rtol=4 * ke.std() / np.sqrt(len(ke)) / ke.mean())


def test_bad_input_is_named():
    W, p = tully.model(1)
    with pytest.raises(QdynInputError, match="frustrated"):
        fssh(W, [tully.MASS_AMU], 0.1, frustrated="bounce")
    with pytest.raises(QdynInputError, match="decoherence"):
        fssh(W, [tully.MASS_AMU], 0.1, decoherence="afssh")
    with pytest.raises(QdynInputError, match="dt_fs"):
        fssh(W, [tully.MASS_AMU], -1.0)
    with pytest.raises(QdynInputError, match="exactly one"):
        run_fssh(W, p, masses=[tully.MASS_AMU], dt_fs=0.1, n_steps=10, key=jax.random.PRNGKey(0), initial_state=0,
                 replicas=2, progress=None)
    # a W_fn that returns an energy (a model's apply) instead of the [n, n] matrix is named
    R0, V0 = np.zeros((2, 1)), np.full((2, 1), 0.05)
    for wrong in (lambda p, R: W(p, R)[0, 0], lambda p, R: W(p, R)[0]):
        with pytest.raises(QdynInputError, match=r"square diabatic matrix .* got shape \(2?,?\)"):
            run_fssh(wrong, p, masses=[tully.MASS_AMU], dt_fs=0.1, n_steps=10, key=jax.random.PRNGKey(0),
                     initial_state=0, R0=R0, V0=V0, progress=None)
    with pytest.raises(QdynInputError, match="not a minimum"):
        Wt, pt, Z, R = analytic.triatomic(2)
        normal_mode_sampler(Wt, pt, R * 1.1, Z)
