"""qdyn.diffsim: gradients of MD observables through the trajectory equal central finite
differences (float64, short NVE run), checkpointing changes memory but not values, and the
observables are smooth and physical. A spring-network water keeps compilation short; the
same checks on a BPNN model are in benchmarks/diffsim_memory.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn.diffsim import (band_centroid_cm, make_rollout, mean_distance, smooth_pair_histogram,
                          soft_peak_position, vacf_spectrum)
from qdyn.md.integrators import make_space, masses
from qdyn.md.potentials import spring_network
from qdyn.structures import water

R_GRID = np.linspace(0.7, 1.3, 61)


@pytest.fixture(scope="module")
def setup():
    R, system = water()
    energy_fn, init = spring_network(R)
    mass = jnp.asarray(masses(system))
    # a stretched start: the O–H bonds oscillate, so every observable depends on k
    R0 = R.copy()
    R0[1:] = R[0] + 1.05 * (R[1:] - R[0])
    V0 = jnp.asarray(np.random.default_rng(0).normal(scale=0.005, size=(3, 3)))  # Å/fs
    sp = make_space(system)
    return R0, V0, mass, system, energy_fn, init, sp


def _observables(ro, R0, V0, mass, system):
    def obs(params):
        fr = ro.run(params, R0, V0, mass, system)
        nu, intensity = vacf_spectrum(fr.velocity, mass, ro.dt_frame_fs)
        hist = smooth_pair_histogram(fr.position, [0, 0], [1, 2], R_GRID, width=0.02)
        return jnp.stack([mean_distance(fr.position, [0, 0], [1, 2]), soft_peak_position(R_GRID, hist),
                          band_centroid_cm(nu, intensity, 2500.0, 5000.0)])

    return obs


def test_gradients_through_the_trajectory_equal_finite_differences(setup):
    R0, V0, mass, system, energy_fn, init, sp = setup
    ro = make_rollout(energy_fn, sp.shift_fn, dt_fs=0.5, n_frames=64, stride=2, frames_per_block=8)
    obs = jax.jit(_observables(ro, R0, V0, mass, system))
    params = init(k=20.0)
    values = obs(params)
    jac = jax.jit(jax.jacrev(obs))(params)["k"]
    eps = 1e-4 * float(params["k"])
    fd = (obs({"k": params["k"] + eps}) - obs({"k": params["k"] - eps})) / (2 * eps)
    assert np.all(np.abs(np.asarray(jac)) > 1e-6)  # every observable responds to k: a real test
    np.testing.assert_allclose(jac, fd, rtol=1e-4)
    # physics: a stiffer spring gives a higher stretch frequency, in the O–H stretch band
    assert 2500 < values[2] < 5000 and jac[2] > 0
    # the harmonic O–H stretch of this network scales as sqrt(k): d ln ν / d ln k ≈ 1/2
    assert abs(float(jac[2]) * 20.0 / float(values[2]) - 0.5) < 0.1


def test_checkpointing_keeps_values_and_saves_memory(setup):
    R0, V0, mass, system, energy_fn, init, sp = setup
    params = init(k=20.0)

    def grad_fn(checkpoint, n_frames=1024):
        ro = make_rollout(energy_fn, sp.shift_fn, dt_fs=0.5, n_frames=n_frames, stride=4, checkpoint=checkpoint)
        return jax.grad(lambda p: mean_distance(ro.run(p, R0, V0, mass, system).position, [0, 0], [1, 2]))

    # one compile each: XLA's memory analysis of the compiled gradient, then its value
    compiled = {c: jax.jit(grad_fn(c)).lower(params).compile() for c in (False, True)}
    np.testing.assert_allclose(compiled[True](params)["k"], compiled[False](params)["k"], rtol=1e-10)
    plain, ckpt = (compiled[c].memory_analysis().temp_size_in_bytes for c in (False, True))
    assert ckpt < plain / 4, (ckpt, plain)  # 4096 steps: residuals of every step vs ~√ of them


def test_soft_observables_approach_their_hard_counterparts():
    x = np.linspace(0.0, 2.0, 201)
    y = jnp.exp(-((x - 1.23) ** 2) / 0.01)
    assert abs(float(soft_peak_position(x, y, sharpness=200.0)) - 1.23) < 2e-3
    # the kernel density integrates to one and peaks at the distance it was given
    R = jnp.asarray([[[0.0, 0, 0], [0.97, 0, 0]]])
    h = smooth_pair_histogram(R, [0], [1], R_GRID, width=0.02)
    assert abs(float(jnp.sum(h) * (R_GRID[1] - R_GRID[0])) - 1.0) < 1e-6
    assert abs(R_GRID[int(jnp.argmax(h))] - 0.97) < 1e-9


def test_langevin_gradient_with_fixed_noise_equals_finite_differences(setup):
    R0, V0, mass, system, energy_fn, init, sp = setup
    ro = make_rollout(energy_fn, sp.shift_fn, dt_fs=0.5, n_frames=32, stride=2, frames_per_block=8,
                      ensemble="nvt-langevin", temperature_K=300.0, friction_per_fs=0.02)

    def obs(params, key):
        fr = ro.run(params, R0, V0, mass, system, key)
        return jnp.stack([mean_distance(fr.position, [0, 0], [1, 2]), jnp.mean(fr.velocity ** 2)])

    obs = jax.jit(obs)
    params, key = init(k=20.0), jax.random.PRNGKey(3)
    jac = jax.jit(jax.jacrev(obs))(params, key)["k"]
    eps = 1e-4 * float(params["k"])
    fd = (obs({"k": params["k"] + eps}, key) - obs({"k": params["k"] - eps}, key)) / (2 * eps)
    assert np.all(np.abs(np.asarray(jac)) > 1e-6)
    np.testing.assert_allclose(jac, fd, rtol=1e-4)
    # the noise is real (another key, another trajectory) and held fixed (the same key, the same one)
    np.testing.assert_array_equal(obs(params, key), obs(params, key))
    assert abs(float(obs(params, jax.random.PRNGKey(4))[1] - obs(params, key)[1])) > 1e-3 * float(obs(params, key)[1])


def test_rollout_refuses_what_it_cannot_differentiate(setup):
    from qdyn.validation import QdynInputError

    R0, V0, mass, system, energy_fn, init, sp = setup
    with pytest.raises(QdynInputError, match="nve"):
        make_rollout(energy_fn, sp.shift_fn, dt_fs=0.5, n_frames=8, ensemble="nvt-nose-hoover", temperature_K=300.0)
    langevin = make_rollout(energy_fn, sp.shift_fn, dt_fs=0.5, n_frames=8, ensemble="nvt", temperature_K=300.0)
    with pytest.raises(QdynInputError, match="key"):
        langevin.run(init(k=20.0), R0, V0, mass, system)
    with pytest.raises(QdynInputError, match="divide"):
        make_rollout(energy_fn, sp.shift_fn, dt_fs=0.5, n_frames=10, frames_per_block=3)
