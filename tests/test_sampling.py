"""Enhanced sampling: CVs (gradients vs finite differences, batching, invariance), the bias
inside the compiled MD loop (force = -grad bias, metadynamics fills the visited basin),
umbrella windows + MBAR recovering a double-well free energy with Hamiltonian replica
exchange, and the exchange acceptance obeying detailed balance."""

from dataclasses import replace

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from qdyn import units
from qdyn.md import MDOutput, MDSettings, run_md
from qdyn.sampling import cv
from qdyn.sampling.bias import biased_energy_fn, make_bias, stack_states, umbrella_states
from qdyn.sampling.exchange import ReplicaExchange, by_rung
from qdyn.system import System
from qdyn.testing import random_orthogonal

T = 300.0
KT = units.temperature_to_energy(T)
R4 = jnp.array([[0.1, -0.2, 0.05], [1.1, 0.1, -0.1], [1.3, 1.2, 0.2], [2.0, 1.5, 1.1]])

CVS = {
    "distance": lambda R: cv.distance(R, 0, 2),
    "angle": lambda R: cv.angle(R, 0, 1, 2),
    "dihedral": lambda R: cv.dihedral(R, 0, 1, 2, 3),
    "coordination": lambda R: cv.coordination(R, [0, 1], [2, 3], 1.5),
    "difference": lambda R: cv.difference(R, 0, 1, 2, 3),
}


@pytest.mark.parametrize("name", sorted(CVS))
def test_cv_gradient_matches_finite_differences_and_is_invariant(name):
    f = jax.jit(CVS[name])
    g = np.asarray(jax.jit(jax.grad(CVS[name]))(R4))
    assert np.abs(g).max() > 1e-3  # non-trivial: the CV moves with the atoms
    rng = np.random.default_rng(1)
    for _ in range(2):
        d = rng.normal(size=R4.shape)
        h = 1e-5
        fd = (f(R4 + h * d) - f(R4 - h * d)) / (2 * h)
        np.testing.assert_allclose(np.sum(g * d), fd, rtol=1e-6, atol=1e-9)
    # rotations and translations keep it (proper rotations: a dihedral flips sign in a mirror)
    Q = random_orthogonal(jax.random.PRNGKey(3), reflection=False)
    np.testing.assert_allclose(f(R4 @ Q.T + 0.7), f(R4), atol=1e-10)


def test_cv_batched_equals_loop_and_periodic_image():
    Rs = R4[None] + 0.1 * jax.random.normal(jax.random.PRNGKey(0), (5, 4, 3))
    for f in CVS.values():
        np.testing.assert_allclose(f(Rs), np.stack([f(r) for r in Rs]), atol=1e-12)
    box = 3.0 * jnp.eye(3)
    shifted = R4.at[2].add(jnp.array([3.0, -3.0, 0.0]))  # atom 2 moved by a lattice vector
    np.testing.assert_allclose(cv.distance(shifted, 0, 2, box), cv.distance(R4, 0, 2, box), atol=1e-12)
    np.testing.assert_allclose(cv.dihedral(shifted, 0, 1, 2, 3, box), cv.dihedral(R4, 0, 1, 2, 3, box), atol=1e-12)


def test_bias_force_is_minus_grad_of_bias_vs_fd():
    bias = make_bias(cv.stack([lambda R, b: cv.distance(R, 0, 2, b), lambda R, b: cv.dihedral(R, 0, 1, 2, 3, b)]),
                     periods=(None, 2 * np.pi), sigma=(0.2, 0.5), height_eV=0.05, pace=1, temperature_K=T,
                     max_hills=4)
    st = bias.init(n_cv=2, center=[1.5, 3.0], kappa=[0.5, 0.2])
    for shift in (0.0, 0.05, -0.1):  # three hills near the configuration
        st = bias.update(st, R4 + shift, None)
    assert int(st.n_hills) == 3
    system = System.create([8, 1, 1, 8])
    zero = lambda R, *, params, system, neighbor=None: 0.0 * jnp.sum(R)
    E = biased_energy_fn(zero, bias)
    e = lambda R: E(R, params=({}, st), system=system)
    F = -np.asarray(jax.grad(e)(R4))
    assert np.abs(F).max() > 1e-3
    d = np.random.default_rng(0).normal(size=R4.shape)
    h = 1e-5
    np.testing.assert_allclose(-np.sum(F * d), (e(R4 + h * d) - e(R4 - h * d)) / (2 * h), rtol=1e-6)
    # the dihedral restraint is periodic: a centre 2π away is the same restraint
    st2 = st._replace(center=st.center.at[1].add(2 * np.pi))
    np.testing.assert_allclose(bias.energy(R4, None, st2), bias.energy(R4, None, st), atol=1e-12)


# -- a particle in a 1D double well (x), harmonic in y and z ---------------------------------
BARRIER = 3.0 * KT


def double_well(R, *, params, system, neighbor=None):
    x, y, z = R[0, 0], R[0, 1], R[0, 2]
    return BARRIER * (x * x - 1.0) ** 2 + 0.5 * 2.0 * (y * y + z * z)


X_CV = cv.stack([lambda R, box: cv.position(R, 0, 0)])
OUT = MDOutput(stride=50, frames_per_block=20, progress=None)


@pytest.fixture(scope="module")
def metad():
    """(bias, MD settings, run kwargs): one bias object, so its compiled block is shared by the tests."""
    bias = make_bias(X_CV, sigma=(0.1,), height_eV=0.2 * KT, pace=50, bias_factor=10.0, temperature_K=T,
                     max_hills=40)
    settings = MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=2000, temperature_K=T, friction_per_fs=0.05,
                          replicas=2)
    kw = dict(bias=bias, key=jax.random.PRNGKey(7))
    return bias, settings, kw


def test_metadynamics_bias_grows_where_the_walker_sits(metad):
    bias, settings, kw = metad
    res = run_md(double_well, {}, np.array([[-1.0, 0.0, 0.0]]), System.create([1]), settings, output=OUT, **kw)
    st = res.bias_state
    np.testing.assert_array_equal(np.asarray(st.n_hills), [40, 40])
    visited = res.cv[..., 0]
    for r in range(2):  # the bias is highest where walker r sat most, zero where it never went
        counts, edges = np.histogram(visited[:, r], bins=12)
        mode = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
        V = np.asarray(bias.hills(jnp.array([[mode], [3.0]]), jax.tree_util.tree_map(lambda x: x[r], st)))
        assert V[0] > 3 * 0.2 * KT and V[1] < 1e-6, V
    # well-tempered: later hills are lower than the first
    h = np.asarray(st.hill_height)
    assert np.all(h[:, -1] < h[:, 0])
    # the bias energy recorded per frame is the bias at the frame's CV
    last = jax.vmap(lambda b, x: bias.energy(jnp.array([[x, 0.0, 0.0]]), None, b))(st, visited[-1])
    np.testing.assert_allclose(res.bias_energy[-1], last, rtol=1e-10)


def test_shared_walkers_deposit_into_one_bias(tmp_path):
    """Multiple walkers: every pace, each replica's CV becomes a hill of one common bias that
    every replica holds (identical copies), with the height of the bias before the deposit."""
    from qdyn.sampling.config import build, load_bias_config

    cfg = tmp_path / "walkers.yaml"
    cfg.write_text("cvs:\n  - {kind: position, atoms: [0], axis: 0}\nmetadynamics: {sigma: [0.1], height_eV: 0.005, "
                   "pace_steps: 50, bias_factor: 10, walkers: shared}\n")
    bias, states, _ = build(load_bias_config(cfg), replicas=3, n_steps=1000, temperature_K=T)
    assert bias.walkers == "shared" and bias.max_hills == 60  # 20 deposits × 3 walkers
    from qdyn.train.config import ConfigError

    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(cfg.read_text() + "exchange: {enabled: true}\n")
    with pytest.raises(ConfigError, match="shared"):
        load_bias_config(mixed)
    R0 = np.array([[[-1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]], [[-0.9, 0.0, 0.0]]])
    settings = MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=1000, temperature_K=T, friction_per_fs=0.05,
                          replicas=3)
    res = run_md(double_well, {}, R0, System.create([1]), settings,
                 output=MDOutput(stride=50, frames_per_block=10, progress=None), bias=bias, bias_states=states,
                 key=jax.random.PRNGKey(11))
    st = res.bias_state
    np.testing.assert_array_equal(np.asarray(st.n_hills), [60, 60, 60])
    for leaf in (st.hill_center, st.hill_height):  # one bias: every replica's copy is the same
        a = np.asarray(leaf)
        assert all(np.array_equal(a[r], a[0]) for r in range(3))
    # deposit k holds the three walkers' CVs at step 50 (k + 1): frame k + 1 (frame 0 is step 0)
    centers = np.asarray(st.hill_center)[0, :, 0].reshape(20, 3)
    np.testing.assert_allclose(centers, res.cv[1:, :, 0], atol=1e-12)
    assert np.ptp(centers[-1]) > 0.05  # the walkers sit in different places: a real test
    heights = np.asarray(st.hill_height)[0].reshape(20, 3)
    np.testing.assert_allclose(heights[0], 0.005, rtol=1e-12)  # the first three see an empty bias
    assert np.all(heights[-1] < 0.005)  # well-tempered, by the hills of all walkers
    # the free energy of a shared bias is one estimate (no spread between copies to report)
    from qdyn.sampling.free_energy import metad_fes

    fe = metad_fes(bias, st, np.linspace(-1.5, 1.5, 7)[:, None])
    assert fe.n_samples == 60 and np.all(np.isnan(fe.dF))


def test_biased_run_restarts_with_its_bias(metad, tmp_path):
    """The hills are checkpointed with the MD state: a run stopped halfway and restarted
    ends exactly where the uninterrupted one does."""
    bias, settings, kw = metad
    R0, system = np.array([[-1.0, 0.0, 0.0]]), System.create([1])
    full = run_md(double_well, {}, R0, system, settings, output=replace(OUT, out_dir=tmp_path / "a"), **kw)
    run_md(double_well, {}, R0, system, settings.replace(n_steps=1000), output=replace(OUT, out_dir=tmp_path / "b"),
           **kw)
    resumed = run_md(double_well, {}, R0, system, settings,
                     output=replace(OUT, out_dir=tmp_path / "b", restart=True), **kw)
    np.testing.assert_array_equal(np.asarray(resumed.bias_state.n_hills), [40, 40])
    np.testing.assert_allclose(np.asarray(resumed.bias_state.hill_center), np.asarray(full.bias_state.hill_center),
                               atol=1e-10)
    np.testing.assert_allclose(resumed.bias_energy[-1], full.bias_energy[-1], atol=1e-10)


def test_exchange_statistics_survive_a_restart(tmp_path):
    """Swap counts, round trips, rung history and the acceptance draws are checkpointed: a run
    stopped halfway and resumed reports what the uninterrupted run reports."""
    centers = np.linspace(-0.6, 0.6, 4)  # overlapping windows: swaps are accepted
    bias = make_bias(X_CV)
    R0, system = np.stack([[[c, 0.0, 0.0]] for c in centers]), System.create([1])
    settings = MDSettings(ensemble="nvt-langevin", dt_fs=1.0, temperature_K=T, friction_per_fs=0.05, replicas=4)

    def run(n_steps, out, restart=False):
        return run_md(double_well, {}, R0, system, settings.replace(n_steps=n_steps),
                      output=MDOutput(out_dir=tmp_path / out, restart=restart, stride=20, frames_per_block=5,
                                      progress=None),
                      bias=bias, bias_states=umbrella_states(bias, centers, 0.2), key=jax.random.PRNGKey(5),
                      exchange=ReplicaExchange(bias, temperature_K=T, seed=3))

    full = run(2000, "a").exchange
    run(1000, "b")
    resumed = run(2000, "b", restart=True).exchange
    assert full["attempts"] == 20 and sum(full["pair_attempts"]) > 0
    assert np.sum(np.asarray(full["pair_attempts"]) * np.asarray(full["acceptance"])) > 0  # swaps happened
    assert full == resumed
    # a fresh exchange object without the checkpoint's state would count only the second half
    fresh = ReplicaExchange(bias, temperature_K=T, seed=3)
    fresh.restore({"rng": fresh.rng.bit_generator.state}, replicas=4)
    assert fresh.statistics() == {"attempts": 0}


def test_umbrella_windows_with_exchange_and_mbar_recover_the_double_well():
    from qdyn.sampling.free_energy import rms_difference, umbrella_fes

    centers = np.linspace(-1.5, 1.5, 8)
    bias = make_bias(X_CV)
    states = umbrella_states(bias, centers, 1.0)
    ex = ReplicaExchange(bias, temperature_K=T, seed=0)
    R0 = np.stack([[[c, 0.0, 0.0]] for c in centers])
    res = run_md(double_well, {}, R0, System.create([1]),
                 MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=40000, temperature_K=T, replicas=8,
                            friction_per_fs=0.05),
                 output=MDOutput(stride=40, frames_per_block=25, progress=None), bias=bias, bias_states=states,
                 exchange=ex, key=jax.random.PRNGKey(2))
    stats = res.exchange
    assert stats["attempts"] == 40 and len(stats["acceptance"]) == 7
    assert 0.05 < np.mean(stats["acceptance"]) <= 1.0, stats["acceptance"]
    print("acceptance", stats["acceptance"], "round trips", stats["round_trips"])
    x = by_rung(res.cv[..., 0], stats["rung_history"], initial=bool(res.step[0] == 0))
    # each rung's samples sit around its own window
    np.testing.assert_allclose(x.mean(axis=0), centers, atol=0.25)
    edges = np.linspace(-1.6, 1.6, 33)
    fe = umbrella_fes(x, centers, 1.0, temperature_K=T, bin_edges=edges, discard=50)
    exact = BARRIER * (fe.s**2 - 1.0) ** 2
    inner = np.abs(fe.s) < 1.3
    err = rms_difference(fe.F, exact, inner) / KT
    assert err < 0.3, err
    assert np.all(np.isfinite(fe.dF[inner])) and np.all(fe.dF[inner] < 0.5 * KT)


def test_exchange_acceptance_obeys_detailed_balance():
    """Two tempering rungs on fixed configurations: the swap is accepted with probability
    min(1, exp(-Δ)), so forward/backward acceptance ratios equal exp(-Δ)."""
    bias = make_bias(X_CV)
    scales = (1.0, 0.5)  # T and 2T
    E = np.array([-0.05, 0.0])  # model energies of the two configurations, eV
    R = np.zeros((2, 1, 3))
    delta = (scales[0] - scales[1]) * (E[1] - E[0]) / KT  # u_0(x1) + u_1(x0) - u_0(x0) - u_1(x1)
    st = stack_states([bias.init(n_cv=1, scale=s) for s in scales])
    rates, n = [], 400
    for order in (E, E[::-1]):
        ex = ReplicaExchange(bias, temperature_K=T, seed=1)
        n_acc = 0
        for _ in range(n):
            ex.rung_of, ex.n_calls = None, 0  # the same assignment (and even pairs) every time
            ex.attempt(st, order, R)
            n_acc += ex.n_accepted[0]
        rates.append(n_acc / n)
    assert delta > 0
    expected = np.exp(-delta)
    np.testing.assert_allclose(rates[0], expected, atol=4 * np.sqrt(expected * (1 - expected) / n))
    assert rates[1] == 1.0


def test_bias_config_template_validates_and_bad_input_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from qdyn.cli.app import app

    path = tmp_path / "bias.yaml"
    res = CliRunner().invoke(app, ["template", "--kind", "bias", "--out", str(path)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["validate", str(path), "--kind", "bias"])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("cvs:\n  - {kind: dihedral, atoms: [0, 1, 2]}\nmetadynamics: {sigma: [0.1], heigth_eV: 0.1}\n")
    res = CliRunner().invoke(app, ["validate", str(bad), "--kind", "bias"])
    assert res.exit_code != 0
    assert "4 atoms" in res.output and "heigth_eV" in res.output and "Traceback" not in res.output
    # the config builds a bias whose windows match the replicas, and refuses a mismatch
    from qdyn.sampling.config import build, load_bias_config

    bias, states, ex = build(load_bias_config(path), replicas=4, n_steps=100, temperature_K=T)
    np.testing.assert_allclose(np.asarray(states.center)[:, 0], [2.6, 2.8, 3.0, 3.2])
    assert ex is not None
    from qdyn.validation import QdynInputError

    with pytest.raises(QdynInputError, match="4 windows but 3 replicas"):
        build(load_bias_config(path), replicas=3, n_steps=100, temperature_K=T)


@pytest.mark.slow
def test_qdyn_md_with_bias_writes_the_sampling_report(tmp_path, write_run):
    import json

    from typer.testing import CliRunner

    from qdyn.cli.app import app
    from qdyn.models import bpnn

    model = bpnn.build(species=(1, 8), hidden=(8,))
    write_run(tmp_path / "run", model, model.init(jax.random.PRNGKey(0)))
    (tmp_path / "bias.yaml").write_text("cvs:\n  - {kind: distance, atoms: [0, 3]}\n"
                                        "umbrella: {centers: [2.8, 2.9, 3.0, 3.1], kappa_eV: 5.0}\n"
                                        "exchange: {enabled: true}\nfes_bins: 12\n")
    out = tmp_path / "md"
    args = ["md", "--model", str(tmp_path / "run"), "--structure", "water_dimer", "--ensemble", "nvt", "--dt", "0.5",
            "--steps", "200", "--stride", "10", "--replicas", "4", "--bias", str(tmp_path / "bias.yaml"),
            "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "sampling.json").read_text())
    assert summary["exchange"]["attempts"] == 2 and len(summary["exchange"]["acceptance"]) == 3
    assert (out / "fes.png").exists() and any(v is not None for v in summary["free_energy"]["F_eV"])
    cvs = np.load(out / "sampling.npz")["cv"]
    assert cvs.shape == (21, 4, 1) and np.all(np.abs(cvs.mean(axis=0)[:, 0] - [2.8, 2.9, 3.0, 3.1]) < 0.3)
    # a window count that does not match the replicas is one clear line
    three = [*args[:args.index("--replicas") + 1], "3", *args[args.index("--replicas") + 2:-1], str(tmp_path / "md2")]
    res = CliRunner().invoke(app, three)
    assert res.exit_code != 0 and "4 windows but 3 replicas" in res.output and "Traceback" not in res.output
