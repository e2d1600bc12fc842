"""Multistate (diabatic) models: invariance of W and the adiabats, Hellmann–Feynman forces
against finite differences, eigenvalues, training on adiabatic data, run round trip, and
the shipped CaH2 S0/S1 data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.models import multistate
from qdyn.system import System

SMALL = dict(hidden=(8,), n_qubits=2, layers=2, cutoff=5.0, n_radial=4, zetas=(1.0,))
R0 = np.array([[0.0, 0.0, 0.0], [2.05, 0.1, 0.0], [-1.9, 0.5, 0.2]])
SYSTEM = System.create(["Ca", "H", "H"])


def _model(backbone, n_states=2):
    model = multistate.build(species=(1, 20), n_states=n_states, backbone=backbone, **SMALL)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    return model, params


@pytest.mark.parametrize("backbone", multistate.BACKBONES)
def test_diabatic_matrix_and_adiabats_are_invariant(backbone):
    model, params = _model(backbone)
    fn = jax.jit(multistate.diabatic_and_adiabatic_fn(model))
    W0, _, E0, F0 = fn(params, jnp.asarray(R0), SYSTEM)
    # non-triviality: forces of both states are not ~0, W (coupling included) moves with R
    assert float(jnp.min(jnp.max(jnp.abs(F0), axis=(1, 2)))) > 1e-3
    W1, *_ = fn(params, jnp.asarray(R0 + 0.05 * np.random.default_rng(0).normal(size=R0.shape)), SYSTEM)
    assert float(jnp.min(jnp.abs(W1 - W0))) > 1e-6
    assert abs(float(W0[0, 1])) > 1e-4
    for k in jax.random.split(jax.random.PRNGKey(5), 2):
        Q = testing.random_orthogonal(k, reflection=True)
        t = np.array([1.3, -0.7, 2.2])
        W, _, E, F = fn(params, jnp.asarray(R0 @ Q.T + t), SYSTEM)
        np.testing.assert_allclose(W, W0, atol=1e-10)
        np.testing.assert_allclose(E, E0, atol=1e-10)
        np.testing.assert_allclose(F, F0 @ Q.T, atol=1e-9)
    perm = [0, 2, 1]  # exchange the hydrogens
    W, _, E, F = fn(params, jnp.asarray(R0[perm]), SYSTEM)
    np.testing.assert_allclose(W, W0, atol=1e-10)
    np.testing.assert_allclose(F, F0[:, perm], atol=1e-9)
    # the adiabats are the eigenvalues of W, ascending
    np.testing.assert_allclose(E0, np.linalg.eigvalsh(np.asarray(W0)), atol=1e-10)
    np.testing.assert_allclose(W0, np.asarray(W0).T, atol=0)


def test_core_wall_lifts_every_diabat_alike_and_only_below_its_radius():
    from qdyn.models.core_repulsion import core_repulsion
    from qdyn.models import build_model

    radii = {"H-H": 0.6, "H-Ca": 1.6}
    plain, params = _model("bpnn")
    walled = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", core_radii=radii, **SMALL)
    wall = core_repulsion((1, 20), radii)
    fn, fw = jax.jit(plain.diabatic), jax.jit(walled.diabatic)
    np.testing.assert_allclose(fw(params, jnp.asarray(R0), SYSTEM), fn(params, jnp.asarray(R0), SYSTEM), atol=0)
    R = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 0.45, 0.0]])  # H–H 0.45 Å, one Ca–H 1.5 Å
    e = float(wall(jnp.asarray(R), SYSTEM.species, SYSTEM.mask))
    assert e > 3.0  # non-trivial: (0.15/0.1)³ + (0.1/0.1)³ eV
    np.testing.assert_allclose(fw(params, jnp.asarray(R), SYSTEM) - fn(params, jnp.asarray(R), SYSTEM),
                               e * np.eye(2), atol=1e-12)
    # gaps (and so couplings and NACs) are untouched
    Ew, En = walled.adiabatic(params, jnp.asarray(R), SYSTEM), plain.adiabatic(params, jnp.asarray(R), SYSTEM)
    np.testing.assert_allclose(Ew[1] - Ew[0], En[1] - En[0], atol=1e-12)
    # recorded in the config and rebuilt from it
    assert walled.config["core_radii"] == radii
    again = build_model(walled.config)
    np.testing.assert_allclose(again.diabatic(params, jnp.asarray(R), SYSTEM), fw(params, jnp.asarray(R), SYSTEM), atol=0)


@pytest.mark.parametrize("n_states", [2, 3])
def test_adiabatic_forces_are_minus_gradient(n_states):
    """F_i = -∇E_i (closed form for 2 states, Hellmann–Feynman eigh for 3) vs central FD."""
    model, params = _model("bpnn", n_states)
    ef = jax.jit(multistate.adiabatic_energies_and_forces_fn(model))
    adiabatic = jax.jit(model.adiabatic)
    E, F = ef(params, jnp.asarray(R0), SYSTEM)
    assert len(np.unique(np.round(np.asarray(E), 6))) == n_states  # non-degenerate here
    h = 1e-5
    for k in range(3):
        v = np.random.default_rng(k).normal(size=R0.shape)
        v /= np.linalg.norm(v)
        fd = (adiabatic(params, R0 + h * v, SYSTEM) - adiabatic(params, R0 - h * v, SYSTEM)) / (2 * h)
        an = -np.einsum("iax,ax->i", np.asarray(F), v)
        assert np.max(np.abs(an)) > 1e-3
        np.testing.assert_allclose(fd, an, rtol=1e-6, atol=1e-8)
    # the ground state is the single-state apply: the shared tooling sees a normal model
    testing.assert_forces_match_fd(model, params, R0, SYSTEM)


def test_eigenvalue_gradients_are_finite_at_a_crossing():
    W = jnp.array([[0.3, 0.0], [0.0, 0.3]])
    for f in (multistate.eigvals_2x2, multistate.eigvalsh_hf):
        J = jax.jacfwd(f)(W)
        assert np.all(np.isfinite(np.asarray(J)))
        np.testing.assert_allclose(f(W), [0.3, 0.3], atol=1e-15)
    # away from it both agree with numpy and with each other, values and gradients
    W = jnp.array([[0.3, 0.2], [0.2, -0.4]])
    np.testing.assert_allclose(multistate.eigvals_2x2(W), np.linalg.eigvalsh(np.asarray(W)), atol=1e-14)
    np.testing.assert_allclose(jax.jacfwd(multistate.eigvals_2x2)(W), jax.jacfwd(multistate.eigvalsh_hf)(W),
                               atol=1e-12)


def _synthetic(n=24, seed=0):
    """Two crossing diabats of CaH2-like geometries with a smooth coupling, labelled with
    exact adiabatic energies and forces."""
    from qdyn.data import Dataset
    from qdyn.data.samplers import triatomic

    R = triatomic(n=n, r1=[1.8, 2.6], r2=[1.8, 2.6], angle_deg=[100.0, 179.0], seed=seed, random_orientation=True)

    def W_of(R):
        r1, r2 = jnp.linalg.norm(R[1] - R[0]), jnp.linalg.norm(R[2] - R[0])
        cos = jnp.dot(R[1] - R[0], R[2] - R[0]) / (r1 * r2)
        a = (r1 - 2.0) ** 2 + (r2 - 2.0) ** 2 + 0.3 * (1 + cos)
        d = 1.0 - 0.8 * (r1 + r2 - 4.0)
        c = 0.1 * jnp.exp(-((r1 - r2) ** 2))
        return jnp.array([[a, c], [c, d]])

    E = jax.vmap(lambda x: jnp.linalg.eigvalsh(W_of(x)))(jnp.asarray(R))
    G = jax.vmap(jax.jacfwd(lambda x: jnp.linalg.eigvalsh(W_of(x))))(jnp.asarray(R))
    E = np.asarray(E) - 1000.0
    return Dataset(R=R, Z=np.broadcast_to([20, 1, 1], (n, 3)), E=E[:, 0], F=-np.asarray(G)[:, 0],
                   E_states=E, F_states=-np.asarray(G))


def test_training_on_adiabatic_data_and_run_round_trip(tmp_path):
    from qdyn.train.config import parse_config
    from qdyn.train.trainer import load_run, predict_states, train

    ds = _synthetic()
    cfg = parse_config({
        "model": {"family": "multistate", "backbone": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]},
        "data": {"n_train": 16, "n_val": 4, "n_test": 4},
        "loss": {"smoothness_weight": 1e-3, "coupling_far_weight": 1e-3, "diabat_order_weight": 1e-3},
        "optim": {"learning_rate": 1e-2}, "epochs": 30, "batch_size": 8, "checkpoint_every": 30,
    })
    res = train(cfg, tmp_path / "run", progress=False, data=ds)
    h = res.history
    assert h[-1]["train_loss"] < 0.3 * h[0]["train_loss"], (h[0]["train_loss"], h[-1]["train_loss"])
    states = res.metrics["train"]["states"]
    assert len(states) == 2 and all(s["energy_rmse_meV"] > 0 for s in states)
    model, params, info = load_run(tmp_path / "run")
    assert info["model"]["family"] == "multistate" and model.is_multistate
    E1, F1, W1 = predict_states(model, params, ds)
    E2, F2, W2 = predict_states(res.model, res.params, ds)
    np.testing.assert_allclose(E1, E2, atol=1e-12)
    np.testing.assert_allclose(W1, W2, atol=1e-12)


def test_shipped_cah2_has_two_states_with_consistent_labels():
    from qdyn.data import load_shipped

    ds = load_shipped("CaH2")
    assert ds.E_states.shape == (ds.n_frames, 2) and ds.n_frames >= 50
    gap = ds.E_states[:, 1] - ds.E_states[:, 0]
    assert gap.min() > 0 and gap.max() > 3.0  # ordered states; well separated at the minimum
    # the funnel: the symmetric bend (scans of parts 1 and 4, r = 2.05 Å) closes the gap to a
    # few tens of meV near 50° and opens it again on both sides; S0 and S1 are continuous
    part = ds.extras["sampler_part"]
    bend = np.flatnonzero((part == 1) | (part == 4))
    u = ds.R[bend, 1:] - ds.R[bend, :1]
    ang = np.degrees(np.arccos(np.sum(u[:, 0] * u[:, 1], -1) / np.prod(np.linalg.norm(u, axis=-1), -1)))
    order = np.argsort(ang)
    ang, E = ang[order], ds.E_states[bend[order]]
    g = E[:, 1] - E[:, 0]
    k = int(np.argmin(g))
    assert 45 < ang[k] < 55 and g[k] < 0.1, (ang[k], g[k])
    assert g[0] > 0.5 and g[-1] > 2.0
    dense = np.diff(ang) < 3.0  # the 2.5° part of the scan
    assert np.abs(np.diff(E, axis=0))[dense].max() < 0.5
    np.testing.assert_allclose(ds.E_states[:, 0], ds.E, atol=0)
    np.testing.assert_allclose(ds.F_states[:, 0], ds.F, atol=0)
    fd = ds.metadata["fd_check"]  # S1 forces vs finite differences of the labeller, recorded at build time
    assert fd["max_abs_error_eV_per_A"] < 5e-3, fd
