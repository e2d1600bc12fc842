"""The nonadiabatic-coupling term of the multistate loss (``loss.nac_weight``).

The model's ``h_ij = u_iᵀ ∇W u_j`` equals ``(E_j − E_i) d_ij`` with d_ij from finite differences
of its eigenvectors; the loss is zero when the reference is the model's own coupling with any
sign per frame, positive otherwise, blind to padding and to frames without finite couplings,
and its parameter gradient matches central finite differences in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.data import Dataset
from qdyn.md.adapters import diabatic_fn
from qdyn.models import multistate
from qdyn.namd.electronic import align_phases, eigh_symmetric, electronic_structure
from qdyn.system import System
from qdyn.train.batches import make_batch
from qdyn.train.config import ConfigError, parse_config
from qdyn.train.losses import build_loss, scaled_couplings

SYSTEM = System.create(["Ca", "H", "H"])


def cah2(r1, r2, angle_deg):
    a = np.radians(angle_deg) / 2
    return np.array([[0.0, 0.0, 0.0], [r1 * np.sin(a), 0.0, r1 * np.cos(a)], [-r2 * np.sin(a), 0.0, r2 * np.cos(a)]])


FRAMES = np.stack([cah2(2.1, 1.95, 70.0), cah2(2.0, 2.2, 95.0), cah2(2.3, 2.05, 120.0)])


@pytest.fixture(scope="module")
def setup():
    """A tiny odd-coupling model, its own labels on FRAMES (energies, forces, couplings), the
    NAC-only loss from the train config and a jitted value-and-gradient of it."""
    cfg = parse_config({
        "model": {"family": "multistate", "backbone": "bpnn", "hidden": [6], "n_radial": 4, "zetas": [1.0],
                  "cutoff": 5.0, "odd_couplings": {"0-1": ["H"]}},
        "data": {"n_train": 3, "n_val": 0, "n_test": 0},
        "loss": {"energy_weight": 0.0, "force_weight": 0.0, "nac_weight": 1.0},
        "epochs": 1, "batch_size": 4,
    })
    model = cfg.model.build((1, 20))
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    el = jax.jit(jax.vmap(lambda p, R: electronic_structure(diabatic_fn(model, SYSTEM), p, R), in_axes=(None, 0)))(
        params, jnp.asarray(FRAMES))
    E, nac = np.asarray(el.energy), np.asarray(el.nac)
    ds = Dataset(R=FRAMES, Z=np.tile([20, 1, 1], (3, 1)), E=E[:, 0], F=-np.asarray(el.grad[:, 0]), E_states=E,
                 F_states=-np.asarray(el.grad), extras={"nacs_states": nac})
    loss = build_loss(cfg, model, ds, (1, 20))
    w = (jnp.asarray(0.0), jnp.asarray(0.0), jnp.asarray(0.0))
    value = jax.jit(lambda p, b: loss(p, b, *w)[1]["loss_nac"])
    grad = jax.jit(jax.grad(lambda p, b: loss(p, b, *w)[1]["loss_nac"]))
    return model, params, ds, value, grad


def test_h_is_gap_times_eigenvector_derivative(setup):
    """h_01 · v = (E1 − E0) ⟨u_0|∂_v u_1⟩, the derivative from central differences of eigh's vectors."""
    model, params, *_ = setup
    W_fn = jax.jit(diabatic_fn(model, SYSTEM))
    R = jnp.asarray(FRAMES[1])
    W, dW = W_fn(params, R), jax.jit(jax.jacfwd(diabatic_fn(model, SYSTEM), argnums=1))(params, R)
    h = scaled_couplings(W, dW)
    v = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)))
    eps = 1e-5
    E, U = eigh_symmetric(W)
    U_p = align_phases(eigh_symmetric(W_fn(params, R + eps * v))[1], U)
    U_m = align_phases(eigh_symmetric(W_fn(params, R - eps * v))[1], U)
    d01_v = float(U[:, 0] @ (U_p[:, 1] - U_m[:, 1])) / (2 * eps)
    assert abs(d01_v) > 1e-3  # the coupling is not trivially zero here
    np.testing.assert_allclose(float(jnp.sum(h[0, 1] * v)), float(E[1] - E[0]) * d01_v, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(h[0, 1]), np.asarray(h[1, 0]), atol=1e-12)  # ∇W is symmetric
    grad_E = (eigh_symmetric(W_fn(params, R + eps * v))[0] - eigh_symmetric(W_fn(params, R - eps * v))[0]) / (2 * eps)
    np.testing.assert_allclose(np.asarray(jnp.einsum("iiax,ax->i", h, v)), np.asarray(grad_E), rtol=1e-6)  # ∇E_i


def with_nacs(ds, nacs):
    return Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, E_states=ds.E_states, F_states=ds.F_states,
                   extras={"nacs_states": nacs})


def test_nac_loss_zero_at_own_couplings_for_any_sign(setup):
    model, params, ds, value, _ = setup
    flipped = ds.extras["nacs_states"] * np.array([1.0, -1.0, -1.0])[:, None, None, None, None]
    for nacs in (ds.extras["nacs_states"], flipped):
        assert float(value(params, make_batch(with_nacs(ds, nacs), np.arange(3), 4, states=True))) < 1e-12  # relative to sigma_H² (rounding)
    # other parameters: a positive error, unchanged by the reference's signs, by padding frames
    # (2 of them against 1) and by a frame whose couplings are not finite; one batch size, one compile
    other = testing.randomize_params(params, jax.random.PRNGKey(7))
    base = float(value(other, make_batch(ds, np.arange(3), 4, states=True)))
    assert base > 1e-3
    np.testing.assert_allclose(float(value(other, make_batch(with_nacs(ds, flipped), np.arange(3), 4, states=True))),
                               base, rtol=1e-12)
    bad = ds.extras["nacs_states"].copy()
    bad[2] = np.nan
    two = float(value(other, make_batch(ds, np.arange(2), 4, states=True)))
    assert abs(two - base) > 1e-6 * base  # frame 2 does count when it is finite
    np.testing.assert_allclose(float(value(other, make_batch(with_nacs(ds, bad), np.arange(3), 4, states=True))), two,
                               rtol=1e-12)


def test_nac_loss_gradient_matches_finite_differences(setup):
    _, params, ds, value, grad = setup
    other = testing.randomize_params(params, jax.random.PRNGKey(3))
    b = make_batch(ds, np.arange(3), 4, states=True)
    g = grad(other, b)
    leaves, tree = jax.tree_util.tree_flatten(other)
    rng = np.random.default_rng(1)
    v = jax.tree_util.tree_unflatten(tree, [jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves])
    eps = 1e-5
    shifted = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * eps * d, other, v)
    fd = (float(value(shifted(1.0), b)) - float(value(shifted(-1.0), b))) / (2 * eps)
    analytic = sum(float(jnp.sum(a * d)) for a, d in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(v)))
    assert abs(analytic) > 1e-3
    np.testing.assert_allclose(analytic, fd, rtol=1e-5)


def test_nac_weight_needs_couplings_in_the_data(setup):
    model, _, ds, _, _ = setup
    cfg = parse_config({"model": {"family": "multistate", "backbone": "bpnn", "hidden": [6]},
                        "loss": {"nac_weight": 1.0}})
    plain = Dataset(R=ds.R, Z=ds.Z, E=ds.E, F=ds.F, E_states=ds.E_states, F_states=ds.F_states, source="plain.npz")
    with pytest.raises(ConfigError, match="no couplings"):
        build_loss(cfg, model, plain, (1, 20))
