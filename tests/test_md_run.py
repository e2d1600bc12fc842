"""MD core: NVE drift ~ dt², Langevin temperature, replicas = loop, NaN stop, restart."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import md, testing
from qdyn.md.potentials import spring_network
from qdyn.models import bpnn
from qdyn.structures import water, water_dimer


def _bpnn():
    model = bpnn.build(species=(1, 8), hidden=(8,))
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.5)
    return model, params


def _drift(energy_fn, params, R, system, dt, t_total_fs, key):
    res = md.run_md(energy_fn, params, R, system,
                    md.MDSettings(ensemble="nve", dt_fs=dt, n_steps=int(round(t_total_fs / dt)), temperature_K=300.0),
                    output=md.MDOutput(stride=int(round(2.0 / dt)), progress=None), key=key)
    E = res.total[:, 0]
    return np.max(np.abs(E - E[0])), res


@pytest.mark.parametrize("which", ["springs", pytest.param("bpnn", marks=pytest.mark.slow)])
def test_nve_energy_error_shrinks_like_dt_squared(which):
    R, system = water_dimer()
    if which == "springs":
        energy_fn, init = spring_network(R, cutoff=3.2)
        params = init(k=5.0)
    else:
        model, bp_params = _bpnn()
        energy_fn, params = _on_springs(model.apply, bp_params, R)
    key = jax.random.PRNGKey(3)
    e1, res1 = _drift(energy_fn, params, R, system, 0.5, 200.0, key)
    e2, _ = _drift(energy_fn, params, R, system, 0.25, 200.0, key)
    # non-trivial dynamics: the atoms really moved and the energy error is measurable
    assert np.max(np.abs(res1.position[-1, 0] - R)) > 0.02
    assert e1 > 1e-7
    ratio = e1 / e2
    assert 3.0 < ratio < 5.5, (e1, e2, ratio)


def _on_springs(apply, model_params, R, *, scale=0.2, k=5.0):
    """A random model is unbound (atoms fly apart and heat up): hold it on weak springs so
    tests run bound, molecular dynamics through the model's own forces."""
    model_fn = md.model_energy_fn(apply)
    springs, init = spring_network(R, cutoff=3.2)

    def energy_fn(R, *, params, system, neighbor=None):
        return model_fn(R, params=params["model"], system=system) + springs(R, params=params["springs"], system=system)

    return energy_fn, {"model": {**model_params, "scale": jnp.asarray(scale)}, "springs": init(k=k)}


def test_nve_sivqlm_brief():
    from qdyn.models import sivqlm

    model = sivqlm.build("H2O", layers=2)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    R, system = water()
    energy_fn, P = _on_springs(model.apply, params, R)
    res = md.run_md(energy_fn, P, R, system,
                    md.MDSettings(ensemble="nve", dt_fs=0.25, n_steps=160, temperature_K=300.0),
                    output=md.MDOutput(stride=8, progress=None))
    assert np.all(np.isfinite(res.total))
    assert np.ptp(res.potential[:, 0]) > 1e-3  # it moved
    assert np.max(np.abs(res.total - res.total[0])) < 0.05 * np.ptp(res.potential[:, 0])


def test_langevin_mean_temperature_within_statistical_error():
    R, system = water()
    energy_fn, init = spring_network(R)
    params = init(k=5.0)
    T = 300.0
    res = md.run_md(energy_fn, params, R, system,
                    md.MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=4000, temperature_K=T, replicas=64,
                                  friction_per_fs=0.02),
                    output=md.MDOutput(stride=10, frames_per_block=50, progress=None), key=jax.random.PRNGKey(7))
    assert res.dof == 9  # Langevin thermalises every degree of freedom
    temps = res.temperature[len(res.temperature) // 4:]  # after 0.5 ps of equilibration
    per_replica = temps.mean(axis=0)  # replicas are independent: their means are i.i.d.
    mean = per_replica.mean()
    sem = per_replica.std(ddof=1) / np.sqrt(len(per_replica))
    assert sem < 0.03 * T
    assert abs(mean - T) < 4 * sem, (mean, sem)


def test_nose_hoover_mean_temperature_is_the_target():
    R, system = water()
    energy_fn, init = spring_network(R)
    # start cold: the chain must heat the molecules up to T
    res = md.run_md(energy_fn, init(k=5.0), R, system,
                    md.MDSettings(ensemble="nvt-nose-hoover", dt_fs=0.5, n_steps=2000, temperature_K=300.0,
                                  initial_temperature_K=30.0, replicas=16, tau_fs=20.0),
                    output=md.MDOutput(stride=10, frames_per_block=50, progress=None))
    assert res.dof == 6  # 3N − 3: the chain conserves the removed total momentum
    assert np.all(np.isfinite(res.temperature))
    assert res.temperature[0].mean() < 150
    # the chain's equation of motion makes the time average of 2 KE equal dof·kT
    np.testing.assert_allclose(res.temperature[len(res.temperature) // 2:].mean(), 300.0, rtol=0.1)


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_vmap_over_replicas_equals_loop(ensemble):
    R, system = water()
    if ensemble == "nvt":  # a real model, and the per-replica Langevin noise streams
        model, params = _bpnn()
        energy_fn = md.model_energy_fn(model.apply)
    else:
        energy_fn, init = spring_network(R)
        params = init(k=5.0)
    rng = np.random.default_rng(0)
    Rs = R + 0.03 * rng.normal(size=(3, 3, 3))  # different initial structures
    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    settings = md.MDSettings(ensemble=ensemble, dt_fs=0.5, n_steps=40, temperature_K=300.0, replicas=3)
    batched = md.run_md(energy_fn, params, Rs, system, settings, replica_keys=keys,
                        output=md.MDOutput(stride=10, store_replicas=3, progress=None))
    for i in range(3):
        single = md.run_md(energy_fn, params, Rs[i], system, settings.replace(replicas=1),
                           replica_keys=keys[i:i + 1], output=md.MDOutput(stride=10, progress=None))
        np.testing.assert_allclose(batched.position[:, i], single.position[:, 0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(batched.total[:, i], single.total[:, 0], rtol=0, atol=1e-10)
    # the replicas really differ (per-replica RNG streams and structures)
    assert np.max(np.abs(batched.position[-1, 0] - batched.position[-1, 1])) > 1e-3


def _exploding(threshold):
    """Atoms repel (1/r); the energy turns NaN once any pair is farther apart than threshold."""

    def energy_fn(R, *, params, system, neighbor=None):
        d = R[:, None] - R[None]
        n = R.shape[0]
        d2 = jnp.sum(d * d, -1) + jnp.eye(n)
        r = jnp.sqrt(d2)
        e = params["q"] * jnp.sum(jnp.where(jnp.eye(n, dtype=bool), 0.0, 1.0 / r)) / 2
        return jnp.where(jnp.max(jnp.where(jnp.eye(n, dtype=bool), 0.0, r)) > threshold, jnp.nan, e)

    return energy_fn


def test_nan_mid_run_stops_with_last_good_state_saved(tmp_path):
    R, system = water()
    params = {"q": jnp.asarray(0.5)}
    settings = md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=400, temperature_K=10.0, max_temperature_K=1e9)
    output = md.MDOutput(stride=5, frames_per_block=2, progress=None)
    # the same run without the NaN tells which block first crosses the threshold
    ref = md.run_md(_exploding(1e9), params, R, system, settings, output=output)
    dmax = np.array([np.max(np.linalg.norm(x[:, None] - x[None], axis=-1)) for x in ref.position[:, 0]])
    threshold = 0.5 * (dmax[0] + dmax[-1])
    first_bad = int(ref.step[np.argmax(dmax > threshold)])
    block_start = (first_bad - 1) // 10 * 10
    assert block_start >= 20  # really mid-run
    with pytest.raises(md.BlowUpError, match="non-finite") as err:
        md.run_md(_exploding(threshold), params, R, system, settings, output=replace(output, out_dir=tmp_path))
    # the check ran on the NEW state: it stopped in the block that produced the NaN
    assert err.value.step == block_start
    assert err.value.last_good_path.exists()
    state, meta = md.load_state(err.value.last_good_path, err.value.last_good_state)
    assert meta["step"] == block_start
    pos = np.asarray(state.position[0])
    assert np.all(np.isfinite(pos))
    np.testing.assert_allclose(pos, ref.position[block_start // 5, 0], atol=1e-12)  # frame k is step 5k


def test_blow_up_by_temperature_is_detected():
    R, system = water()
    with pytest.raises(md.BlowUpError, match="blew up: temperature") as err:
        md.run_md(_exploding(1e9), {"q": jnp.asarray(0.5)}, R, system,
                  md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=400, temperature_K=10.0),
                  output=md.MDOutput(stride=5, progress=None))
    assert err.value.last_good_path is None
    assert np.all(np.isfinite(np.asarray(err.value.last_good_state.position)))


def test_checkpoint_restart_continues_exactly(tmp_path):
    model, params = _bpnn()
    R, system = water()
    energy_fn = md.model_energy_fn(model.apply)
    settings = md.MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=60, temperature_K=300.0)
    output = md.MDOutput(stride=5, frames_per_block=2, checkpoint_every=1, progress=None)
    key = jax.random.PRNGKey(5)
    full = md.run_md(energy_fn, params, R, system, settings, output=replace(output, out_dir=tmp_path / "a"), key=key)
    md.run_md(energy_fn, params, R, system, settings.replace(n_steps=30), output=replace(output, out_dir=tmp_path / "b"),
              key=key)
    resumed = md.run_md(energy_fn, params, R, system, settings,
                        output=replace(output, out_dir=tmp_path / "b", restart=True), key=key)
    np.testing.assert_allclose(resumed.position[-1], full.position[-1], atol=1e-10)
    from qdyn.md.trajectory import read_h5md

    a, b = read_h5md(tmp_path / "a" / "trajectory.h5"), read_h5md(tmp_path / "b" / "trajectory.h5")
    # frame 0 (the initial state, t = 0) and 12 sampled frames; the restart added no second frame 0
    assert a["position"].shape == b["position"].shape == (13, 3, 3)
    np.testing.assert_allclose(a["position"], b["position"], atol=1e-10)
    np.testing.assert_allclose(b["time"], 2.5 * np.arange(13))
    np.testing.assert_allclose(a["position"][0], R, atol=1e-12)
    np.testing.assert_array_equal(full.step, 5 * np.arange(13))


def test_bad_input_is_refused_before_compiling():
    R, system = water()
    energy_fn, init = spring_network(R)
    with pytest.raises(ValueError, match="multiple of stride"):
        md.run_md(energy_fn, init(), R, system,
                  md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=7),
                  output=md.MDOutput(stride=5))
    with pytest.raises(ValueError, match="ensemble"):
        md.run_md(energy_fn, init(), R, system,
                  md.MDSettings(ensemble="npt-ish", dt_fs=0.5, n_steps=10),
                  output=md.MDOutput(stride=5))
    with pytest.raises(ValueError, match="temperature"):
        md.run_md(energy_fn, init(), R, system,
                  md.MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=10, temperature_K=-1),
                  output=md.MDOutput(stride=5))
    with pytest.raises(ValueError, match="padding"):
        md.run_md(energy_fn, init(), np.vstack([R, [[9, 9, 9]]]), system.pad(4),
                  md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=10),
                  output=md.MDOutput(stride=5))


def test_a_rebuilt_model_reuses_the_compiled_md_programs():
    """A model built again from its config has new closures (an active-learning round, a
    reloaded run): its MD compiles no new program and runs the same trajectory."""
    from qdyn import compiled

    R, system = water()
    settings = md.MDSettings(ensemble="nvt-langevin", dt_fs=0.5, n_steps=20, temperature_K=300.0, replicas=2)
    runs, counts = [], []
    for _ in range(2):
        model, params = _bpnn()  # a new model object each time, equal config and params
        before = compiled.stats()
        runs.append(md.run_md(md.model_energy_fn(model.apply), params, R, system, settings,
                              output=md.MDOutput(stride=10, progress=None), key=jax.random.PRNGKey(2)))
        counts.append({k: compiled.stats()[k] - before[k] for k in ("compiled", "reused")})
    # the second run found its init and block programs in the table (the first run put them
    # there, or an equal program of an earlier test did)
    assert counts[1]["compiled"] == 0 and counts[1]["reused"] == 2, counts
    np.testing.assert_array_equal(runs[1].position, runs[0].position)
    assert np.max(np.abs(runs[0].position[-1] - runs[0].position[0])) > 1e-3  # the atoms moved


def test_runs_at_another_temperature_or_time_step_compile_nothing_new():
    """The time step (NVE, Langevin), temperature (thermostats) and pressure (NPT) are
    call-time arguments of the compiled programs: a temperature scan compiles once, and each
    run still gets its own temperature. (The dt² test above and the NPT pressure test run
    their two values through one program too.)"""
    R, system = water()
    energy_fn, init = spring_network(R)
    params = init(k=5.0)
    runs = {}
    for dt, T in ((0.5, 150.0), (0.5, 450.0), (0.25, 450.0)):
        runs[dt, T] = md.run_md(energy_fn, params, R, system,
                                md.MDSettings(ensemble="nvt", dt_fs=dt, n_steps=int(1000 * 0.5 / dt), temperature_K=T,
                                              replicas=32, friction_per_fs=0.05),
                                output=md.MDOutput(stride=10, frames_per_block=25, progress=None),
                                key=jax.random.PRNGKey(5))
    first, *others = runs.values()
    assert first.timings["compile_s"] > 0 and all(r.timings["compile_s"] == 0.0 for r in others)
    for (dt, T), r in runs.items():
        temps = r.temperature[len(r.temperature) // 2:].mean(axis=0)  # per replica, after 0.25 ps
        assert abs(temps.mean() - T) < 4 * temps.std(ddof=1) / np.sqrt(len(temps)) + 0.05 * T, (dt, T, temps.mean())
    # the time step is the run's: half the step, the same 0.5 ps in twice the frames
    assert runs[0.25, 450.0].time_fs[-1] == runs[0.5, 450.0].time_fs[-1] == 500.0
    assert len(runs[0.25, 450.0].time_fs) == 2 * len(runs[0.5, 450.0].time_fs) - 1
