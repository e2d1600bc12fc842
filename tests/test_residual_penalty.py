"""The residual penalty of the loss (``loss.residual``, ``loss.huber_delta``): Huber equals the
squared loss below δ and is linear beyond, in the trainer's loss as built from a config; and
a fit with a few gross label errors stays near the clean fit under Huber, not under squares."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import influence as inf
from qdyn.data import load_shipped
from qdyn.models import build_model
from qdyn.train import parse_config
from qdyn.train.batches import make_batch
from qdyn.train.losses import build_loss, make_loss_fn, residual_penalty

from test_influence import SIGMA_E, SIGMA_F, exp_model, lih


def test_huber_is_the_square_below_delta_and_linear_beyond():
    x = jnp.asarray([-3.0, -1.0, -0.2, 0.0, 0.5, 1.0, 2.5])
    huber = residual_penalty("huber", 1.0)
    np.testing.assert_allclose(huber(x), np.where(np.abs(x) <= 1, x**2, 2 * np.abs(x) - 1), rtol=1e-15)
    slope = jax.vmap(jax.grad(huber))(x)
    np.testing.assert_allclose(slope, np.clip(2 * x, -2, 2), rtol=1e-15)  # continuous, bounded pull
    with pytest.raises(ValueError, match="residual 'l1'"):
        residual_penalty("l1")


def test_the_configs_huber_loss_is_the_formula_on_the_models_residuals():
    ds = load_shipped("H2O").subset(np.arange(12))
    species = [1, 8]
    base = {"model": {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}}
    model = build_model({"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}, species=species)
    params = model.init(jax.random.PRNGKey(0))
    batch = make_batch(ds, np.arange(12), 12)
    delta = 0.7
    squared = build_loss(parse_config(base), model, ds, species)
    huber = build_loss(parse_config({**base, "loss": {"residual": "huber", "huber_delta": delta}}), model, ds, species)
    huber_wide = build_loss(parse_config({**base, "loss": {"residual": "huber", "huber_delta": 1e6}}), model, ds, species)
    w = (1.0, 1.0, 0.0)
    (l_sq, aux_sq), (l_h, aux_h) = squared(params, batch, *w), huber(params, batch, *w)
    np.testing.assert_allclose(huber_wide(params, batch, *w)[0], l_sq, rtol=1e-13)  # nothing beyond δ: squares

    # the same residuals, penalised by hand: x² inside δ, 2δ|x| − δ² outside
    def hub(x):
        return np.where(np.abs(x) <= delta, x**2, 2 * delta * np.abs(x) - delta**2)

    E, F = jax.vmap(lambda R, s: jax.value_and_grad(model.apply, argnums=1)(params, R, s))(batch.R, batch.system)
    F = -F
    sigma_E = float(np.std((ds.E - ds.E.mean()) / 3))  # one composition: reference energies remove the mean
    sigma_F = float(np.sqrt(np.mean(ds.F**2)))
    r_E = (np.asarray(E) - ds.E) / 3 / sigma_E
    r_F = (np.asarray(F) - ds.F) / sigma_F
    np.testing.assert_allclose(aux_sq["loss_E"], np.mean(r_E**2), rtol=1e-9)  # the scales are as assumed
    np.testing.assert_allclose(aux_h["loss_E"], np.mean(hub(r_E)), rtol=1e-9)
    np.testing.assert_allclose(aux_h["loss_F"], np.mean(hub(r_F)), rtol=1e-9)
    assert np.abs(r_F).max() > delta and np.abs(r_F).min() < delta  # both branches were exercised
    assert float(l_h) < float(l_sq)


def test_a_few_gross_label_errors_move_a_huber_fit_far_less_than_a_squared_one():
    """The linear LiH potential of test_influence, fitted by L-BFGS on 23 frames of which 3
    carry energies 2 eV off (forces intact), against the fit to clean labels."""
    clean = lih(np.arange(0, 200, 9))
    bad = clean.subset(np.arange(clean.n_frames))
    bad.E[[4, 11, 17]] += 2.0
    test = lih(np.arange(3, 200, 13))
    model = exp_model()

    def fit(ds, residual):
        loss = make_loss_fn(model.apply, sigma_E=SIGMA_E, sigma_F=SIGMA_F, per_atom=True, residual=residual,
                            huber_delta=1.0)
        obj = inf.make_objective(model, model.init(None), ds, loss, chunk=4)
        theta, _, gnorm = inf.make_minimizer(obj, max_iter=3000, gtol=1e-10)(obj.theta, jnp.ones(ds.n_frames))
        params = obj.unravel(theta)
        energies = jax.vmap(lambda R: model.apply(params, R, None))(jnp.asarray(test.R))
        return np.asarray(energies)

    reference = fit(clean, "squared")
    np.testing.assert_allclose(fit(clean, "huber"), reference, atol=2e-3)  # clean labels: the same fit
    off_squared = np.abs(fit(bad, "squared") - reference).max()
    off_huber = np.abs(fit(bad, "huber") - reference).max()
    assert off_squared > 0.1  # the outliers drag the squared fit by a tenth of an eV
    print(f"largest test-energy shift from the clean fit: squared {off_squared:.4f} eV, huber {off_huber:.4f} eV")
    assert off_huber < 0.2 * off_squared, (off_huber, off_squared)


def test_robust_scales_equal_the_spreads_on_normal_data_and_ignore_a_few_far_off():
    from qdyn.train.normalize import robust_rms, robust_std

    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 2.0, size=20000)
    assert robust_std(x) == pytest.approx(np.std(x), rel=0.03)
    assert robust_rms(x - 0.3) == pytest.approx(np.sqrt(np.mean((x - 0.3) ** 2)), rel=0.03)
    far = x.copy()
    far[:1000] += 40.0  # 5 % of the values 20 sigma off
    assert np.std(far) > 4 * np.std(x)  # the spread is ruled by them
    assert robust_std(far) == pytest.approx(robust_std(x), rel=0.1)
    np.testing.assert_allclose(robust_std(np.stack([x, 3 * x], 1), axis=0), [robust_std(x), 3 * robust_std(x)], rtol=1e-12)


def test_the_configs_robust_scales_reach_the_loss():
    """σ_E read back from the loss (loss_E = mean((residual/σ_E)²)) on H2O with and without
    three frames 2 eV off: the spread grows several times, the robust scale barely moves."""
    species = [1, 8]
    mc = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}
    model = build_model(mc, species=species)
    params = model.init(jax.random.PRNGKey(0))
    clean = load_shipped("H2O").subset(np.arange(40))
    bad = clean.subset(np.arange(40))
    bad.E[[3, 17, 29]] += 2.0
    E = np.asarray(jax.vmap(model.apply, in_axes=(None, 0, 0))(params, jnp.asarray(clean.R),
                                                               make_batch(clean, np.arange(40), 40).system))

    def sigma_E(ds, scales):
        loss = build_loss(parse_config({"model": mc, "loss": {"scales": scales}}), model, ds, species)
        _, aux = loss(params, make_batch(ds, np.arange(40), 40), 1.0, 1.0, 0.0)
        return float(np.sqrt(np.mean(((E - ds.E) / 3) ** 2) / float(aux["loss_E"])))

    spread_clean, spread_bad = sigma_E(clean, "spread"), sigma_E(bad, "spread")
    robust_clean, robust_bad = sigma_E(clean, "robust"), sigma_E(bad, "robust")
    assert spread_clean == pytest.approx(float(np.std((clean.E - clean.E.mean()) / 3)), rel=1e-9)
    assert robust_clean == pytest.approx(spread_clean, rel=0.3)  # about the same on clean labels (0.8x: heavier tails)
    assert spread_bad > 4 * spread_clean
    assert robust_bad == pytest.approx(robust_clean, rel=0.1)
