"""Energy-based frame weights (``loss.frame_weight_scale_eV``, qdyn.train.weighting): the
weights themselves, the trainer's weighted training and validation losses, and influence
functions of a weighted objective against weighted least squares in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import influence as inf
from qdyn.data import Dataset, load_shipped
from qdyn.train import parse_config, train
from qdyn.train.batches import make_batch
from qdyn.train.losses import make_loss_fn
from qdyn.train.weighting import fit_frame_weighting, frame_weights

from test_influence import SIGMA_E, SIGMA_F, W_E, W_F, design, exp_model, lih


def _mixed(n_eq: int = 24, n_stretched: int = 24) -> Dataset:
    """Near-equilibrium and stretched-bond water frames (energies spanning 9 eV), interleaved."""
    eq, st = load_shipped("H2O"), load_shipped("H2O_stretched")
    both = Dataset.concatenate([eq.subset(np.arange(n_eq)), st.subset(np.arange(0, st.n_frames, st.n_frames // n_stretched)[:n_stretched])])
    order = np.random.default_rng(0).permutation(both.n_frames)
    return both.subset(order)


def test_weights_follow_the_rational_form_per_composition():
    ds = _mixed()
    s = 0.5
    weighting = fit_frame_weighting(ds, s)
    w = frame_weights(weighting, ds)
    dE = ds.E - ds.E.min()
    raw = s / (s + dE)
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-14)
    assert w.mean() == pytest.approx(1.0, rel=1e-14)
    assert w.max() / w.min() > 10  # stretched frames 9 eV up count far less: not a uniform weighting
    np.testing.assert_allclose(w[np.argmin(ds.E)], 1 / raw.mean(), rtol=1e-14)

    # another composition (LiH) is measured from its own lowest frame, in training or not
    lih_ds = load_shipped("LiH").subset(np.arange(0, 200, 20))
    pad = np.zeros((lih_ds.n_frames, 1), dtype=lih_ds.Z.dtype)
    lih3 = Dataset(R=np.concatenate([lih_ds.R, np.zeros((lih_ds.n_frames, 1, 3))], 1),
                   Z=np.concatenate([lih_ds.Z, pad], 1), E=lih_ds.E,
                   F=np.concatenate([lih_ds.F, np.zeros((lih_ds.n_frames, 1, 3))], 1))  # padded to 3 atoms
    w_unseen = frame_weights(weighting, lih3)
    np.testing.assert_allclose(w_unseen, s / (s + lih3.E - lih3.E.min()) / raw.mean(), rtol=1e-14)
    both = Dataset.concatenate([ds, lih3])
    w_both = frame_weights(fit_frame_weighting(both, s), both)
    raw_both = np.concatenate([raw, s / (s + lih3.E - lih3.E.min())])
    np.testing.assert_allclose(w_both, raw_both / raw_both.mean(), rtol=1e-14)


def test_a_weighted_run_weighs_its_training_and_validation_frames(tmp_path):
    ds = _mixed()
    model = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}
    raw = {"model": model, "data": {"n_train": 32, "n_val": 8, "n_test": 8}, "epochs": 2, "batch_size": 8,
           "optim": {"learning_rate": 5e-3}, "seed": 0}
    plain = train(parse_config(raw), tmp_path / "plain", progress=False, data=ds)
    cfg = parse_config({**raw, "loss": {"frame_weight_scale_eV": 0.5}})
    weighted = train(cfg, tmp_path / "weighted", progress=False, data=ds)
    info = weighted.metrics["frame_weights"]
    assert info["scale_eV"] == 0.5 and info["train_min"] < 0.2 < 1.0 < info["train_max"]
    assert "frame_weights" not in plain.metrics
    moved = [np.max(np.abs(np.asarray(a) - np.asarray(b)))
             for a, b in zip(jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(weighted.params))]
    assert max(moved) > 1e-6  # the weights changed what the steps did

    # the recorded validation loss is the weighted mean of the frames' own losses
    from qdyn.train.data import split_data
    from qdyn.train.losses import build_loss, loss_weights

    train_ds, val_ds, _ = split_data(ds, cfg.data)
    loss = jax.jit(build_loss(cfg, weighted.model, train_ds, sorted(set(train_ds.Z.ravel()) - {0})))
    w_val = frame_weights(fit_frame_weighting(train_ds, 0.5), val_ds)
    # the run returns the parameters of its best validation loss
    per_frame = np.array([float(loss(weighted.params, make_batch(val_ds, [i], 1), *loss_weights(cfg, 0))[0])
                          for i in range(val_ds.n_frames)])
    best = min(h["val_loss"] for h in weighted.history)
    assert best == pytest.approx(np.sum(w_val * per_frame) / np.sum(w_val), rel=1e-10)
    assert best != pytest.approx(per_frame.mean(), rel=1e-3)  # unweighted it would differ


@pytest.mark.parametrize("scale_eV", [0.3, 1.0])
def test_weighted_influence_equals_weighted_least_squares_in_closed_form(scale_eV):
    ds, test = lih(np.arange(0, 200, 9)), lih([197])
    A, y, _ = design(ds)
    n = ds.n_frames
    w = frame_weights(fit_frame_weighting(ds, scale_eV), ds)
    assert w.max() / w.min() > 2
    sw = np.sqrt(w)[:, None, None]
    theta = np.linalg.lstsq((sw * A).reshape(-1, 4), (sw[..., 0] * y).reshape(-1), rcond=None)[0]
    model = exp_model()
    params = {**model.init(None), "A": jnp.asarray(theta[:3]), "c": jnp.asarray(theta[3])}
    loss = make_loss_fn(model.apply, sigma_E=SIGMA_E, sigma_F=SIGMA_F, per_atom=True)
    obj = inf.make_objective(model, params, ds, loss, loss_weights=(W_E, W_F, 0.0), chunk=4, frame_weights=w)
    np.testing.assert_allclose(np.asarray(jax.grad(lambda t: inf.training_loss(obj, t))(obj.theta)), 0.0, atol=1e-9)

    _, _, phi_q = design(test)
    g_q = inf.query_gradient(obj, inf.parse_target("energy"), *test.to_system(0))
    res = inf.influence(obj, g_q, method="exact", damping=0.0)
    resid = np.einsum("zkp,p->zk", A, theta) - y
    grads = 2 * np.einsum("zkp,zk->zp", A, resid)
    H = 2 * np.einsum("z,zkp,zkq->pq", w, A, A) / n
    np.testing.assert_allclose(inf.hessian(obj), H, rtol=1e-9)
    np.testing.assert_allclose(res.scores, w * (grads @ np.linalg.solve(H, g_q)) / n, rtol=1e-9, atol=1e-12)

    # the weighted leave-one-out refits, in closed form: the influence is their first-order prediction
    def refit(z):
        keep = np.arange(n) != z
        return np.linalg.lstsq((sw[keep] * A[keep]).reshape(-1, 4), (sw[keep, :, 0] * y[keep]).reshape(-1),
                               rcond=None)[0]

    actual = np.array([phi_q[0] @ (refit(z) - theta) for z in range(n)])
    assert np.abs(actual).max() > 1e-3
    lev = np.array([np.linalg.eigvals(np.linalg.solve(n * H, 2 * w[z] * A[z].T @ A[z])).real.max() for z in range(n)])
    bound = lev / (1 - lev) * np.abs(res.scores) + 1e-3 * np.abs(actual).max()
    assert np.all(np.abs(actual - res.scores) <= bound), np.c_[w, lev, res.scores, actual]


@pytest.mark.parametrize("scale_eV", [None, 0.5])
def test_the_objective_of_a_run_carries_its_frame_weights(scale_eV, tmp_path, write_run):
    """`qdyn explain` builds the objective from the run directory: the weights come from its
    config, on the frames the trainer's own split put in training."""
    import yaml

    from qdyn.models import sivqlm
    from qdyn.train.data import split_data

    model = sivqlm.build("LiH", layers=1)
    run = tmp_path / "run"
    write_run(run, model, model.init(jax.random.PRNGKey(1)))
    raw = {"model": {"family": "sivqlm", "template": "LiH", "layers": 1}, "epochs": 5,
           "data": {"path": "shipped:LiH", "n_train": 12, "n_val": 0, "n_test": 4, "split_seed": 3}}
    if scale_eV is not None:
        raw["loss"] = {"frame_weight_scale_eV": scale_eV}
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    obj = inf.objective_of_run(run).objective
    weights = np.asarray(obj.weights).reshape(-1)
    train_ds = split_data(load_shipped("LiH"), parse_config(raw).data)[0]
    expected = np.ones(12) if scale_eV is None else frame_weights(fit_frame_weighting(train_ds, scale_eV), train_ds)
    np.testing.assert_allclose(weights[:12], expected, rtol=1e-14)
    assert np.all(weights[12:] == 0)  # padding slots
    if scale_eV is not None:
        assert expected.max() / expected.min() > 1.5


def test_per_source_weights_multiply_the_energy_weights_through_load_split_and_loss(tmp_path):
    from qdyn.train import ConfigError
    from qdyn.train.data import SOURCE_KEY, load_data, split_data
    from qdyn.train.losses import build_loss, loss_weights
    from qdyn.train.weighting import weighting_of

    paths = ["shipped:H2O", "shipped:H2O_stretched"]
    with pytest.raises(ConfigError, match="data.weights: 1 weight"):
        parse_config({"data": {"path": paths, "weights": [1.0]}})
    with pytest.raises(ConfigError, match="data.weights: 1 weight.*list"):
        parse_config({"data": {"path": "shipped:H2O", "weights": [1.0]}})
    with pytest.raises(ConfigError, match="must be positive"):
        parse_config({"data": {"path": paths, "weights": [1.0, 0.0]}})

    model = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}
    raw = {"model": model, "data": {"path": paths, "weights": [1.0, 0.25], "n_train": 40, "n_val": 12, "n_test": 8},
           "loss": {"frame_weight_scale_eV": 2.0}, "epochs": 1, "batch_size": 8, "seed": 0}
    cfg = parse_config(raw)
    ds = load_data(cfg.data)
    assert np.array_equal(np.bincount(ds.extras[SOURCE_KEY]), [500, 146])
    train_ds, val_ds, _ = split_data(ds, cfg.data)
    source = train_ds.extras[SOURCE_KEY]
    assert 0 < source.sum() < len(source)  # both sources in training
    w = frame_weights(weighting_of(cfg, train_ds), train_ds)
    by_energy = frame_weights(fit_frame_weighting(train_ds, 2.0), train_ds)
    product = by_energy * np.where(source == 1, 0.25, 1.0)
    np.testing.assert_allclose(w, product / product.mean(), rtol=1e-13)

    res = train(cfg, tmp_path / "run", progress=False)
    assert res.metrics["frame_weights"]["source_weights"] == [1.0, 0.25]
    loss = jax.jit(build_loss(cfg, res.model, train_ds, [1, 8]))
    w_val = frame_weights(weighting_of(cfg, train_ds), val_ds)
    per_frame = np.array([float(loss(res.params, make_batch(val_ds, [i], 1), *loss_weights(cfg, 0))[0])
                          for i in range(val_ds.n_frames)])
    assert res.history[-1]["val_loss"] == pytest.approx(np.sum(w_val * per_frame) / np.sum(w_val), rel=1e-10)

    # a dataset passed in memory does not say where its frames came from: refused, by name
    with pytest.raises(ConfigError, match="data.weights: .*passed in memory"):
        train(cfg, tmp_path / "mem", progress=False, data=_mixed(40, 24))
