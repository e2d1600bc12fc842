"""Influence functions (qdyn.influence) against closed forms and leave-one-out retraining.

The models here are potentials of the LiH bond: E(r) = c + Σ_k A_k exp(-β_k r) with the
decay rates β FIXED (linear in θ: a least-squares problem whose influence and leave-one-out
refit have closed forms), and a Morse curve c + D (1 - exp(-a (r - r0)))² (nonlinear in
θ). They compile in seconds, where a circuit's third derivatives take tens.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from qdyn import influence as inf
from qdyn.data import load_shipped
from qdyn.models.base import CLASSICAL, FIXED, EnergyModel
from qdyn.train.losses import make_loss_fn

BETA = np.array([0.8, 1.6, 3.2])  # 1/Å
SIGMA_E, SIGMA_F = 0.05, 0.5  # eV per atom, eV/Å
W_E, W_F = 1.0, 0.5


def exp_model() -> EnergyModel:
    def init(key):
        del key
        return {"c": jnp.asarray(-108.6), "A": jnp.asarray([-2.0, 8.0, -3.0]), "beta": jnp.asarray(BETA)}

    def apply(params, R, system, neighbor=None):
        r = jnp.linalg.norm(R[1] - R[0])
        return params["c"] + jnp.sum(params["A"] * jnp.exp(-params["beta"] * r))

    return EnergyModel(init=init, apply=apply, check=lambda R, s: None, name="exp", species=(1, 3), config={},
                       groups={"c": CLASSICAL, "A": CLASSICAL, "beta": FIXED})


def morse_model() -> EnergyModel:
    def init(key):
        del key
        return {"c": jnp.asarray(-217.0), "D": jnp.asarray(1.0), "a": jnp.asarray(1.0), "r0": jnp.asarray(1.5)}

    def apply(params, R, system, neighbor=None):
        r = jnp.linalg.norm(R[1] - R[0])
        return params["c"] + params["D"] * (1 - jnp.exp(-params["a"] * (r - params["r0"]))) ** 2 - params["D"]

    return EnergyModel(init=init, apply=apply, check=lambda R, s: None, name="morse", species=(1, 3), config={},
                       groups={k: CLASSICAL for k in ("c", "D", "a", "r0")})


def lih(idx):
    return load_shipped("LiH").subset(np.asarray(idx))


def objective(model, params, ds):
    loss = make_loss_fn(model.apply, sigma_E=SIGMA_E, sigma_F=SIGMA_F, per_atom=True)
    return inf.make_objective(model, params, ds, loss, loss_weights=(W_E, W_F, 0.0), chunk=4)


def design(ds):
    """Rows A_z [4, P] and targets y_z [4] of each frame's loss ||A_z θ - y_z||² for the
    linear model (θ = c, A_1..3): the scaled energy residual and the three force residuals
    of the H atom (Li's are their negatives: together 6 force terms / (3 · 2 atoms)).
    θ is ordered as ravel_pytree orders the dict: A_1..3, then c."""
    d = ds.R[:, 1] - ds.R[:, 0]
    r = np.linalg.norm(d, axis=1)
    u = d / r[:, None]
    phi = np.concatenate([np.exp(-BETA[None] * r[:, None]), np.ones((len(r), 1))], axis=1)  # E = phi θ
    dphi = np.concatenate([-BETA[None] * phi[:, :3], np.zeros((len(r), 1))], axis=1)  # dE/dr
    sE, sF = np.sqrt(W_E) / (2 * SIGMA_E), np.sqrt(W_F * 2 / 6) / SIGMA_F
    A = np.concatenate([sE * phi[:, None, :], sF * (-dphi[:, None, :] * u[:, :, None])], axis=1)  # F_H = -dE/dr u
    y = np.concatenate([sE * ds.E[:, None], sF * ds.F[:, 1]], axis=1)
    return A, y, phi


def test_exact_influence_equals_the_closed_form_and_predicts_leave_one_out():
    ds, test = lih(np.arange(0, 200, 9)), lih([197])  # 23 frames over the scan; the query beyond the last
    A, y, _ = design(ds)
    n = ds.n_frames
    theta = np.linalg.lstsq(A.reshape(-1, 4), y.reshape(-1), rcond=None)[0]  # the optimum, in closed form
    model = exp_model()
    params = {**model.init(None), "A": jnp.asarray(theta[:3]), "c": jnp.asarray(theta[3])}
    obj = objective(model, params, ds)
    assert obj.excluded == ("beta",) and obj.n_params == 4  # FIXED groups are not θ
    np.testing.assert_allclose(np.asarray(jax.grad(lambda t: inf.training_loss(obj, t))(obj.theta)), 0.0, atol=1e-9)

    _, _, phi_q = design(test)
    g_q = inf.query_gradient(obj, inf.parse_target("energy"), *test.to_system(0))
    np.testing.assert_allclose(g_q, phi_q[0], rtol=1e-12)
    res = inf.influence(obj, g_q, method="exact", damping=0.0)

    resid = np.einsum("zkp,p->zk", A, theta) - y
    grads = 2 * np.einsum("zkp,zk->zp", A, resid)  # ∇L_z
    H = 2 * np.einsum("zkp,zkq->pq", A, A) / n
    np.testing.assert_allclose(inf.frame_gradients(obj), grads, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(inf.hessian(obj), H, rtol=1e-9)
    np.testing.assert_allclose(res.scores, grads @ np.linalg.solve(H, g_q) / n, rtol=1e-9, atol=1e-12)

    # leave-one-out refits, in closed form: the influence is their first-order prediction
    actual = np.array([phi_q[0] @ (np.linalg.lstsq(np.delete(A, z, 0).reshape(-1, 4), np.delete(y, z, 0).reshape(-1),
                                                   rcond=None)[0] - theta) for z in range(n)])
    assert np.abs(actual).max() > 1e-3  # removing a frame moves the extrapolated energy measurably
    # the refit differs from the first-order prediction by the frame's leverage h_z (the
    # largest eigenvalue of (nH)⁻¹ H_z): Δ = I(z) / (1 - h_z) exactly when H_z has rank one
    lev = np.array([np.linalg.eigvals(np.linalg.solve(n * H, 2 * A[z].T @ A[z])).real.max() for z in range(n)])
    assert lev.max() > 0.5 and np.median(lev) < 0.15  # the edge frame is a high-leverage point, most are not
    bound = lev / (1 - lev) * np.abs(res.scores) + 1e-3 * np.abs(actual).max()
    assert np.all(np.abs(actual - res.scores) <= bound), np.c_[lev, res.scores, actual]
    assert spearmanr(res.scores, actual)[0] > 0.97


@pytest.fixture(scope="module")
def trained_pair():
    """(objective at its L-BFGS minimum, the jitted minimiser, the untrained objective) of the
    Morse model on 19 frames of the LiH scan."""
    ds = lih(np.arange(1, 200, 11))
    model = morse_model()
    untrained = objective(model, model.init(None), ds)
    minimize = inf.make_minimizer(untrained, max_iter=2000, gtol=1e-10)
    theta, _, gnorm = minimize(untrained.theta, jnp.ones(ds.n_frames))
    assert float(gnorm) < 1e-8
    return untrained._replace(theta=theta), minimize, untrained


def test_cg_and_arnoldi_agree_with_exact_on_a_nonlinear_model(trained_pair):
    obj, _, untrained = trained_pair
    frames = lih(np.arange(1, 200, 11))
    g_q = inf.query_gradient(obj, inf.parse_target("force:1:z"), *frames.to_system(2))
    exact = inf.influence(obj, g_q, method="exact")
    assert exact.eigenvalue_min > 0  # a minimum
    np.testing.assert_allclose(exact.damping, inf.DEFAULT_RELATIVE_DAMPING * exact.eigenvalue_max, rtol=1e-12)
    for method in ("cg", "arnoldi"):
        res = inf.influence(obj, g_q, method=method, damping=exact.damping)
        np.testing.assert_allclose(res.scores, exact.scores, rtol=1e-7, atol=1e-9 * np.abs(exact.scores).max())
    assert np.ptp(exact.scores) > 0.1 * np.abs(exact.scores).max()  # frames differ in influence
    # Arnoldi on 2 of the 4 eigenpairs drops the flattest directions: a different, approximate answer
    low = inf.influence(obj, g_q, method="arnoldi", damping=exact.damping, arnoldi_rank=2)
    assert np.abs(low.scores - exact.scores).max() > 0.01 * np.abs(exact.scores).max()

    # untrained, the Hessian is indefinite: the default damping restores a positive margin,
    # an explicit one that does not is refused
    g_u = inf.query_gradient(untrained, inf.parse_target("force:1:z"), *frames.to_system(2))
    res = inf.influence(untrained, g_u, method="exact")
    assert res.eigenvalue_min < 0 < res.eigenvalue_max
    np.testing.assert_allclose(res.damping, inf.DEFAULT_RELATIVE_DAMPING * res.eigenvalue_max - res.eigenvalue_min, rtol=1e-12)
    np.testing.assert_allclose(inf.influence(untrained, g_u, method="cg").scores, res.scores, rtol=1e-6)
    with pytest.raises(inf.InfluenceError, match="indefinite"):
        inf.influence(untrained, g_u, method="exact", damping=0.5 * abs(res.eigenvalue_min))


def test_influence_predicts_leave_one_out_retraining_of_a_nonlinear_model(trained_pair):
    obj, minimize, _ = trained_pair
    test = lih([0])  # the query: the shortest bond, outside the training range
    n = obj.n_frames
    H = inf.hessian(obj)
    frame_hessians = jax.jit(jax.vmap(jax.hessian(obj.frame_loss), in_axes=(None, 0)))
    chunks = [jax.tree_util.tree_map(lambda a, c=c: a[c], obj.frames) for c in range(obj.weights.shape[0])]
    H_z = np.concatenate([np.asarray(frame_hessians(obj.theta, f)) for f in chunks])[:n]
    lev = np.array([np.linalg.eigvals(np.linalg.solve(n * H, H_z[z])).real.max() for z in range(n)])
    retrained = []
    for z in range(n):  # retrain without frame z, warm-started from the optimum
        t_z, _, g_z = minimize(obj.theta, jnp.ones(n).at[z].set(0.0))
        assert float(g_z) < 1e-7
        retrained.append(t_z)
    for target in ("energy", "loss"):
        tgt = inf.parse_target(target)
        q = jax.jit(inf.query_function(obj, tgt, *test.to_system(0), E=test.E[0], F=test.F[0]))
        res = inf.influence(obj, inf.query_gradient(obj, tgt, *test.to_system(0), E=test.E[0], F=test.F[0]),
                            method="exact", damping=0.0)
        actual = np.array([float(q(t_z) - q(obj.theta)) for t_z in retrained])
        assert np.abs(actual).max() > 1e-4
        assert spearmanr(res.scores, actual)[0] > 0.9, (target, res.scores, actual)
        # as in the linear case the first-order prediction misses the refit by the frame's
        # leverage h_z = λ_max((nH)⁻¹ H_z): large only for the frames at the short-bond end
        # next to the query, which dominate both
        assert np.argmax(np.abs(res.scores)) == np.argmax(np.abs(actual)) == 0
        if target == "energy":  # the loss is quadratic in the prediction: only ranks are first order there
            bound = lev / (1 - lev) * np.abs(res.scores) + 0.02 * np.abs(actual).max()
            assert np.all(np.abs(actual - res.scores) <= bound), np.c_[lev, res.scores, actual]


def test_targets_are_parsed_or_refused():
    assert inf.parse_target("force:2:y") == inf.Target("force", 2, 1)
    assert str(inf.parse_target(" Energy ")) == "energy"
    for bad in ("force", "force:a:x", "force:0:w", "charge"):
        with pytest.raises(inf.InfluenceError, match="expected energy, loss or force"):
            inf.parse_target(bad)


@pytest.fixture
def lih_run(tmp_path, write_run):
    """A hand-written run directory: a 1-layer LiH siVQLM (6 parameters) trained on 6
    frames of shipped:LiH, as config.yaml records it."""
    import yaml

    from qdyn.models import sivqlm

    model = sivqlm.build("LiH", layers=1)
    run = tmp_path / "run"
    write_run(run, model, model.init(jax.random.PRNGKey(1)))
    (run / "config.yaml").write_text(yaml.safe_dump({
        "model": {"family": "sivqlm", "template": "LiH", "layers": 1}, "epochs": 5,
        "data": {"path": "shipped:LiH", "n_train": 6, "n_val": 0, "n_test": 4, "split_seed": 3}}))
    return run


def test_cli_explain_prints_json_and_writes_the_plot(lih_run, tmp_path):
    from qdyn.cli.app import app
    from qdyn.train.config import DataConfig
    from qdyn.train.trainer import split_data

    out = tmp_path / "explain"
    res = CliRunner().invoke(app, ["explain", "--model", str(lih_run), "--data", "shipped:LiH",
                                                    "--frame", "5", "--top", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    report = json.loads(res.stdout)
    assert report["n_train_frames"] == 6 and report["n_params"] == 6 and report["query"]["target"] == "energy"
    assert [r["rank"] for r in report["top"]] == [1, 2, 3]
    infl = [abs(r["influence"]) for r in report["top"]]
    assert infl == sorted(infl, reverse=True) and infl[0] > 0
    # the training frames are exactly the trainer's split of the run's data
    ds = load_shipped("LiH")
    train_ds, _, _ = split_data(ds, DataConfig(path="shipped:LiH", n_train=6, n_val=0, n_test=4, split_seed=3))
    for r in report["top"]:
        np.testing.assert_array_equal(ds.R[r["data_frame"]], train_ds.R[r["train_frame"]])
        assert r["energy_eV"] == train_ds.E[r["train_frame"]]
    assert (out / "explain.png").stat().st_size > 10_000
    assert json.loads((out / "explain.json").read_text()) == report


def test_cli_explain_bad_frame_is_one_line_and_exit_2(lih_run, tmp_path):
    from qdyn.cli.app import app

    res = CliRunner().invoke(app, ["explain", "--model", str(lih_run), "--data", "shipped:LiH",
                                                    "--frame", "200", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: --frame 200: shipped:LiH has 200 frames"
    res = CliRunner().invoke(app, ["explain", "--model", str(tmp_path / "nothing"), "--data",
                                                    "shipped:LiH", "--frame", "0"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "not a finished qdyn run" in res.stderr
