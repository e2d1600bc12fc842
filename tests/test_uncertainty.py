"""Uncertainty: deep ensembles (one vmapped step = K separate steps; one compiled evaluation =
a loop over members), the last-layer Laplace posterior, calibration and its measures, and the
`qdyn eval` output; every family trains as an ensemble."""

import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app
from qdyn.data import load_shipped
from qdyn.train import load_run, parse_config, predict, train
from qdyn.uncertainty import (Estimator, calibration, ensemble_model, fit_laplace, load_estimator,
                              predict_with_uncertainty, readout_mask, unstack)
from qdyn.uncertainty.ensemble import MemberAxis

BPNN = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}
SMALL = {  # as tests/test_model_families.py
    "sivqlm": {"template": "H2O", "layers": 2},
    "generic": {"template": "H2O", "layers": 2},
    "bpnn": {"hidden": [8], "n_radial": 4},
    "hybrid": {"hidden": [8], "n_radial": 4, "n_qubits": 2, "layers": 1},
    "multistate": {"hidden": [8], "n_radial": 4, "backbone": "hybrid", "n_qubits": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def h2o():
    return load_shipped("H2O").subset(np.arange(24))


def _cfg(model, method="ensemble", size=3, **over):
    raw = {"model": model, "data": {"n_train": 16, "n_val": 4, "n_test": 4}, "epochs": 1, "batch_size": 8,
           "optim": {"learning_rate": 1e-2}, "uncertainty": {"method": method, "ensemble": {"size": size}}}
    raw.update(over)
    return parse_config(raw)


def _leaves_close(a, b, atol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_vmapped_ensemble_step_equals_separate_member_steps(h2o):
    from qdyn.train.batches import batches_of, make_batch
    from qdyn.train.optim import make_optimizer
    from qdyn.train.losses import loss_weights
    from qdyn.train.trainer import _make_step, _prepare

    cfg = _cfg(BPNN)
    _, run = _prepare(cfg, h2o)
    members = unstack(run.params0)
    assert len(members) == 3
    tx = make_optimizer(cfg.optim, run.model.param_labels(members[0]), trainable={"classical"})
    ens_step = _make_step(cfg, run.loss_fn, tx, run.members)
    one_step = _make_step(cfg, run.loss_fn, tx, MemberAxis())
    w = (*loss_weights(cfg, 0), cfg.optim.learning_rate)
    ens = (run.params0, run.members.opt_init(tx)(run.params0), run.params0)
    sep = [(p, tx.init(p), p) for p in members]
    for idx in batches_of(run.train_ds.n_frames, 8, seed=0, epoch=0):
        batch = make_batch(run.train_ds, idx, 8)
        p, o, e, loss, _ = ens_step(*ens, batch, *w)
        ens = (p, o, e)
        outs = [one_step(*s, batch, *w) for s in sep]
        sep = [o[:3] for o in outs]
        np.testing.assert_allclose(np.asarray(loss), [float(o[3]) for o in outs], rtol=1e-12)
    for k, (p, _, _) in enumerate(sep):
        _leaves_close(unstack(ens[0])[k], p, 1e-12)
    # the step moved the members, and they are different models
    assert not np.allclose(np.asarray(sep[0][0]["nets"]["1"]["Dense_0"]["kernel"]),
                           np.asarray(members[0]["nets"]["1"]["Dense_0"]["kernel"]))
    assert not np.allclose(np.asarray(sep[0][0]["nets"]["1"]["Dense_0"]["kernel"]),
                           np.asarray(sep[1][0]["nets"]["1"]["Dense_0"]["kernel"]))


def test_member_zero_of_an_ensemble_run_is_the_single_run(h2o, tmp_path):
    ens = train(_cfg(BPNN, epochs=2), tmp_path / "ens", progress=False, data=h2o, max_steps=3)
    one = train(_cfg(BPNN, method="none", epochs=2), tmp_path / "one", progress=False, data=h2o, max_steps=3)
    _leaves_close(unstack(ens.params)[0], one.params, 1e-12)


def test_ensemble_evaluation_equals_a_loop_over_members(h2o):
    from qdyn.models import build_model

    member = build_model(BPNN, species=(1, 8))
    ens = ensemble_model(member, 4)
    from qdyn.train.trainer import normalize_params

    params = ens.init(jax.random.PRNGKey(3))
    params = jax.tree_util.tree_map(lambda *x: np.stack(x),
                                    *[normalize_params(member, p, h2o, "species_lstsq")[0] for p in unstack(params)])
    pred = predict_with_uncertainty(ens, params, h2o)
    loop = [predict(member, p, h2o) for p in unstack(params)]
    E = np.stack([e for e, _ in loop])
    F = np.stack([f for _, f in loop])
    np.testing.assert_allclose(pred.E, E.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pred.F, F.mean(0), atol=1e-12)
    np.testing.assert_allclose(pred.E_std, E.std(0), atol=1e-12)
    np.testing.assert_allclose(pred.F_std, np.sqrt(F.var(0).mean(-1)), atol=1e-12)
    # the mean model used by MD and the calculator is the same mean
    np.testing.assert_allclose(predict(ens, params, h2o)[0], pred.E, rtol=1e-12)
    # non-trivial: members disagree on every frame and atom
    assert pred.E_std.min() > 1e-4 and pred.F_std.min() > 1e-4
    # the ASE calculator reports the same spread
    from ase import Atoms

    from qdyn.md.ase_calculator import QdynCalculator

    atoms = Atoms(numbers=h2o.Z[0], positions=h2o.R[0], calculator=QdynCalculator(ens, params))
    atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.calc.results["energy_std"], pred.E_std[0], rtol=1e-10)
    np.testing.assert_allclose(atoms.calc.results["forces_std"], pred.F_std[0], rtol=1e-10)


def test_fit_scale_recovers_a_known_factor():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 2.0, 40000)
    err = 3.0 * sigma * rng.standard_normal(sigma.size)
    np.testing.assert_allclose(calibration.fit_scale(err, sigma), 3.0, rtol=0.02)
    # calibrated, the errors are Gaussian with the predicted σ: area near 0, NLL at its minimum
    s = calibration.fit_scale(err, sigma)
    assert calibration.miscalibration_area(err, s * sigma) < 0.01
    assert calibration.gaussian_nll(err, s * sigma) < calibration.gaussian_nll(err, 2 * s * sigma)
    assert calibration.gaussian_nll(err, s * sigma) < calibration.gaussian_nll(err, 0.5 * s * sigma)


def test_calibration_measures_against_hand_computed_values():
    # Spearman without ties: 1 - 6 Σd² / (n(n² - 1)); ranks of |err| are 1 3 2 4, d² sum 2
    np.testing.assert_allclose(calibration.spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]), 1 - 6 * 2 / 60, rtol=1e-14)
    assert np.isnan(calibration.spearman([1, 1, 1], [0.1, 0.2, 0.3]))  # constant σ: no ranking
    # NLL of one error 1 under σ = 2: ½ log(2π·4) + 1/8
    np.testing.assert_allclose(calibration.gaussian_nll([1.0], [2.0]), 0.5 * np.log(8 * np.pi) + 0.125, rtol=1e-14)
    # zero errors: every interval holds them all, observed ≡ 1, area ∫|1 - p| = 1/2
    np.testing.assert_allclose(calibration.miscalibration_area(np.zeros(5), np.ones(5)), 0.5, rtol=1e-12)
    # enormous errors: observed 0 below p = 1; trapezoid on 101 points gives 1/2 - 0.01/2
    np.testing.assert_allclose(calibration.miscalibration_area(np.full(5, 1e9), np.ones(5)), 0.495, rtol=1e-12)
    # errors at exactly the median |z| = 0.6745: half inside below p = 0.5, all above
    p, obs = calibration.calibration_curve([0.5, 2.0], [1.0, 1.0])
    np.testing.assert_array_equal(obs[p < 0.38], 0.0)  # Φ⁻¹(0.69) = 0.50: the first error enters at p ≈ 0.383
    np.testing.assert_array_equal(obs[(p > 0.39) & (p < 0.95)], 0.5)
    with pytest.raises(ValueError, match="finite"):
        calibration.fit_scale([np.nan], [1.0])


def test_readout_of_each_family():
    from qdyn.models import build_model

    def on(family, **kw):
        m = build_model({"family": family, **SMALL[family]}, species=(1, 8))
        mask = readout_mask(m.init(jax.random.PRNGKey(0)))
        flat = jax.tree_util.tree_flatten_with_path(mask)[0]
        return {jax.tree_util.keystr(p) for p, v in flat if v}

    assert on("sivqlm") == {"['scale']", "['shift']"}
    assert on("bpnn") == {"['scale']", "['shift']", "['nets']['1']['Dense_1']['bias']", "['nets']['1']['Dense_1']['kernel']",
                          "['nets']['8']['Dense_1']['bias']", "['nets']['8']['Dense_1']['kernel']"}
    assert on("hybrid") == {"['scale']", "['shift']", "['int_c']", "['int_b']"}


def test_laplace_run_calibrates_and_reloads(h2o, tmp_path):
    res = train(_cfg(BPNN, method="laplace", epochs=2), tmp_path, progress=False, data=h2o)
    unc = json.loads((tmp_path / "metrics.json").read_text())["uncertainty"]
    assert unc["method"] == "laplace" and unc["calibrated_on"] == "val"
    assert np.isfinite(unc["test"]["energy"]["nll"]) and unc["energy_scale"] > 0
    model, params, _ = load_run(tmp_path)
    assert model.member is None  # one model; the posterior is beside it
    est = load_estimator(tmp_path, params)
    pred = predict_with_uncertainty(model, params, h2o, est)
    assert pred.E_std.min() > 0 and pred.F_std.min() > 0
    # the linearised σ is that of the fitted posterior, times the validation factor
    raw = predict_with_uncertainty(model, params, h2o, est._replace(energy_scale=1.0, force_scale=1.0))
    np.testing.assert_allclose(pred.E_std, est.energy_scale * raw.E_std, rtol=1e-12)
    post = fit_laplace(res.model, res.params, h2o.subset(np.arange(4)), prior_precision=1e6)
    assert np.max(np.diag(post.covariance)) <= 1e-6  # a strong prior leaves little variance


def test_eval_cli_reports_sigma_per_frame_and_plots(h2o, tmp_path):
    train(_cfg(BPNN, epochs=2), tmp_path / "run", progress=False, data=h2o)
    data = tmp_path / "h2o.npz"
    from qdyn.data import write

    write(h2o.subset(np.arange(6)), data)
    res = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", str(data), "--per-frame",
                                   "--plot", str(tmp_path / "sigma.png")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["frames"]) == 6
    for f in out["frames"]:
        assert f["energy_std_eV"] > 0 and len(f["forces_std_eV_per_A"]) == 3 and min(f["forces_std_eV_per_A"]) > 0
    assert out["uncertainty"]["method"] == "ensemble" and out["uncertainty"]["calibrated"]
    assert -1 <= out["uncertainty"]["forces"]["spearman"] <= 1
    assert (tmp_path / "sigma.png").stat().st_size > 0


def test_eval_cli_refuses_a_plot_without_an_estimate(h2o, tmp_path, write_run):
    from qdyn.models import build_model

    model = build_model(BPNN, species=(1, 8))
    write_run(tmp_path / "run", model, model.init(jax.random.PRNGKey(0)))
    res = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "run"), "--data", "shipped:H2O",
                                   "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "no uncertainty estimate" in res.output


# The ensemble step is the trainer's one vmapped step for every family; these three cover what
# differs between families (a molecular circuit, per-atom circuits beside an MLP, a diabatic
# head on other data). BPNN ensembles train in the tests above; the generic circuit shares the
# siVQLM's model code.
@pytest.mark.parametrize("family", ["sivqlm", "hybrid", "multistate"])
def test_every_family_trains_as_an_ensemble(family, tmp_path):
    ds = (load_shipped("CaH2") if family == "multistate" else load_shipped("H2O")).subset(np.arange(16))
    cfg = _cfg({"family": family, **SMALL[family]}, size=2,
               data={"n_train": 8, "n_val": 4, "n_test": 4})
    res = train(cfg, tmp_path, progress=False, data=ds)
    unc = res.metrics["uncertainty"]["test"]
    assert np.isfinite(unc["energy"]["nll"]) and np.isfinite(unc["forces"]["nll"])
    model, params, _ = load_run(tmp_path)
    assert model.member is not None and params["scale"].shape == (2,)
    pred = predict_with_uncertainty(model, params, ds.subset(np.arange(2)), load_estimator(tmp_path, params))
    assert pred.E_std.min() > 0 and pred.F_std.min() > 0


def test_laplace_batches_capped_by_system_size_give_the_same_posterior_and_sigma(h2o, monkeypatch):
    """fit_laplace and predict_with_uncertainty cap frames × atoms² per Jacobian batch (a
    96-atom box at 64 frames asked for 50 GB); smaller batches, a partial last one included,
    must not change the posterior or the σ."""
    from qdyn.models import build_model
    from qdyn.uncertainty import laplace

    model = build_model(BPNN, species=(1, 8))
    params = model.init(jax.random.PRNGKey(0))
    ds = h2o.subset(np.arange(10))
    whole = fit_laplace(model, params, ds)  # one batch of 10
    est = Estimator("laplace", posterior=whole)
    sigma_whole = predict_with_uncertainty(model, params, ds, est)
    monkeypatch.setattr(laplace, "_FRAME_PAIRS_PER_CHUNK", 3 * 3**2)  # 3 frames a batch: 3 + 3 + 3 + 1
    capped = fit_laplace(model, params, ds)
    P = whole.covariance.shape[0]
    assert not np.allclose(whole.covariance, np.eye(P), atol=1e-3)  # the data moved it off the prior
    np.testing.assert_allclose(capped.covariance, whole.covariance, rtol=1e-8, atol=1e-14)
    sigma_capped = predict_with_uncertainty(model, params, ds, est)
    np.testing.assert_allclose(sigma_capped.F_std, sigma_whole.F_std, rtol=1e-10)
    np.testing.assert_allclose(sigma_capped.E_std, sigma_whole.E_std, rtol=1e-10)
