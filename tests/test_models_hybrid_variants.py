"""The hybrid model on the spherical-harmonic descriptor: angle-encoded circuit, quantum
symmetry function (QSF) and the classical-only control — physics checks in free space and
in periodic boxes, neighbour lists, MD, parameter parity of the control, config/registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import md, testing
from qdyn.descriptors.neighbors import neighbor_list_fn
from qdyn.models import hybrid
from qdyn.models.base import count_params
from qdyn.quantum.qsf import qsf_circuit
from qdyn.structures import water_lattice, rattle, water, water_dimer
from qdyn.system import System
from qdyn.validation import QdynInputError

SMALL = dict(species=(1, 8), descriptor="power_spectrum", cutoff=4.0, n_radial=3, l_max=2, hidden=(6,))
VARIANTS = {
    "reupload": dict(branch="reupload", n_qubits=2, layers=1),
    "mlp": dict(branch="mlp", n_qubits=2, layers=1),
    "qsf": dict(branch="qsf", n_qubits=4, layers=1),
}


def _model(name):
    model = hybrid.build(**SMALL, **VARIANTS[name])
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    params["g_std"] = jnp.abs(params["g_std"]) + 0.5
    return model, params


# The control runs the same descriptor/integration code as the circuit variants: its full
# check is marked slow (each check_model-style run compiles E+F, second-order and vmap programs).
@pytest.mark.parametrize("name", ["reupload", "qsf", pytest.param("mlp", marks=pytest.mark.slow)])
def test_variant_passes_all_physics_checks_and_is_extensive(name):
    model, params = _model(name)
    R, system = water_dimer()
    R = jnp.asarray(rattle(R, 4))
    # check_model's assertions one by one, only with a smaller finite-difference step: the QSF's
    # trigonometric circuit has enough curvature that h = 1e-4 leaves an O(h²) truncation error
    # of ~5e-8 eV/Å (measured: 4.5e-8, 4.1e-9, 4.8e-10 at h = 1e-4, 3e-5, 1e-5 — it converges as h²)
    testing.assert_e3_invariant(model, params, R, system)
    testing.assert_translation_invariant(model, params, R, system)
    testing.assert_forces_match_fd(model, params, R, system, h=1e-5)
    testing.assert_second_order_gradient(model, params, R, system)
    testing.assert_net_force_zero(model, params, R, system, atol=1e-9)
    # padded to the 12 atoms of the extensivity check below: the two share one compiled E+F
    testing.assert_padding_invariant(model, params, R, system, n_pad=6)
    testing.assert_no_retrace(model, params, R, system)
    for perm in ([0, 2, 1, 3, 4, 5], [3, 4, 5, 0, 1, 2]):
        testing.assert_permutation_invariant(model, params, R, system, perm)
    energy = lambda p, R, system: testing._ef(model)(p, R, system)[0]  # noqa: E731  (the checks' compiled E+F)
    # the branch matters: switching its integration weights off changes the energy
    off = {**params, "int_q": jnp.zeros_like(params["int_q"])}
    assert abs(float(energy(params, R, system) - energy(off, R, system))) > 1e-4
    # extensive: two copies far beyond the cutoff have twice the energy of one
    two = jnp.concatenate([R, R + jnp.array([[30.0, 0.0, 0.0]])])
    sys2 = System.create(system.symbols * 2)
    np.testing.assert_allclose(float(energy(params, two, sys2)), 2 * float(energy(params, R, system)), rtol=1e-12)


def _water_box(n_side=2, spacing=4.6, seed=0):
    R, system = water_lattice(n_side, spacing=spacing, seed=seed, wrap=True)
    return jnp.asarray(R), system


@pytest.mark.parametrize("name", ["reupload", pytest.param("qsf", marks=pytest.mark.slow)])
def test_periodic_box_images_padding_vmap_and_neighbor_lists(name):
    model, params = _model(name)
    R, system = _water_box()  # 8 waters, 9.2 Å box, cutoff 4 Å
    testing.assert_periodic_image_invariant(model, params, R, system)
    testing.assert_e3_invariant(model, params, R, system, n_trials=2)  # the box rotates with the atoms
    testing.assert_padding_invariant(model, params, R, system)
    Rs = jnp.stack([R, R + 0.03 * jnp.sin(jnp.arange(72.0)).reshape(24, 3)])
    testing.assert_vmap_matches_loop(model, params, Rs, system, atol=1e-11)
    # a JAX-MD neighbour list (allocated outside jit, passed as an argument) gives the all-pairs
    # answer (the checks' compiled E+F)
    E0, F0 = testing._ef(model)(params, R, system)
    ef = jax.jit(jax.value_and_grad(model.apply, argnums=1))
    for fmt in ("dense", "sparse"):
        nbrs = neighbor_list_fn(system.box, model.config["cutoff"], skin=0.3, format=fmt).allocate(R)
        E1, g1 = ef(params, R, system, nbrs)
        np.testing.assert_allclose(float(E1), float(E0), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(g1), -np.asarray(F0), atol=1e-10)
    assert float(jnp.max(jnp.abs(F0))) > 1e-3  # non-trivial forces


@pytest.mark.slow
def test_md_with_neighbor_list_conserves_energy_and_matches_dense():
    from qdyn import md

    model, params = _model("qsf")
    params = {**params, "scale": jnp.asarray(0.05)}  # a gentle potential for a short NVE check
    R, system = _water_box()
    nf = neighbor_list_fn(system.box, model.config["cutoff"], skin=0.5, format="dense")
    res = md.run_md(md.model_energy_fn(model.apply), params, R, system,
                    md.MDSettings(ensemble="nve", dt_fs=0.25, n_steps=40, temperature_K=300.0),
                    output=md.MDOutput(stride=10, frames_per_block=2, progress=None), key=jax.random.PRNGKey(0),
                    neighbor_fn=nf)
    drift = np.ptp(res.total)
    assert np.ptp(res.potential) > 10 * drift  # energy flows between kinetic and potential, the total stays
    e_dense = jax.jit(model.apply)(params, jnp.asarray(res.state.position[0]), system)  # jitted: cheaper than eager
    np.testing.assert_allclose(res.potential[-1, 0], float(e_dense), rtol=1e-10)


@pytest.mark.parametrize("n_qubits,layers,descriptor", [(4, 3, "symmetry"), (4, 3, "power_spectrum"),
                                                        (3, 2, "power_spectrum")])
def test_classical_control_has_the_circuit_branchs_width_and_size(n_qubits, layers, descriptor):
    kw = dict(species=(1, 8), n_qubits=n_qubits, layers=layers, descriptor=descriptor)
    q = hybrid.build(**kw, branch="reupload")
    c = hybrid.build(**kw, branch="mlp")
    pq, pc = q.init(jax.random.PRNGKey(0)), c.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(count_params(pc), count_params(pq), rtol=0.05)
    assert pc["int_q"].shape == pq["int_q"].shape  # same branch width into the integration layer
    # the control's branch is scheduled like the circuit it replaces (staged training)
    labels = c.param_labels(pc)
    assert set(jax.tree_util.tree_leaves(labels["ctl_mlp"])) == {"quantum"}
    assert set(jax.tree_util.tree_leaves(labels["mlp"])) == {"classical"}


def test_qsf_is_rotation_invariant_and_needs_parity_averaging_for_reflections():
    rng = np.random.default_rng(0)
    vecs = jnp.asarray(rng.normal(size=(4, 3)))
    cp = {"alpha": jnp.asarray(rng.uniform(1.0, 3.0, size=(2, 4))), "J": jnp.asarray(rng.normal(size=(2, 4)))}
    bare = jax.jit(qsf_circuit(4, 2, parity_average=False).expval)
    avg = jax.jit(qsf_circuit(4, 2).expval)
    Qp = jnp.asarray(testing.random_orthogonal(jax.random.PRNGKey(3), reflection=False))
    Qm = jnp.asarray(testing.random_orthogonal(jax.random.PRNGKey(4), reflection=True))
    f0 = bare(cp, vecs)
    np.testing.assert_allclose(bare(cp, vecs @ Qp.T), f0, atol=1e-12)
    assert float(jnp.max(jnp.abs(bare(cp, vecs @ Qm.T) - f0))) > 1e-4  # chiral without averaging
    g0 = avg(cp, vecs)
    np.testing.assert_allclose(avg(cp, vecs @ Qm.T), g0, atol=1e-12)
    np.testing.assert_allclose(avg(cp, vecs @ Qp.T), g0, atol=1e-12)
    # non-trivial and bounded: pair exchanges lie in [-3, 1] and depend on the vectors
    assert np.all((np.asarray(g0) >= -3 - 1e-12) & (np.asarray(g0) <= 1 + 1e-12))
    assert float(jnp.max(jnp.abs(avg(cp, 0.5 * vecs) - g0))) > 1e-3


def test_bad_variant_choices_are_refused():
    with pytest.raises(QdynInputError, match="use descriptor='power_spectrum'"):
        hybrid.build(species=(1, 8), branch="qsf")
    with pytest.raises(QdynInputError, match="branch: Input should be 'reupload', 'qsf', 'custom' or 'mlp'"):
        hybrid.build(species=(1, 8), branch="quantum")
    with pytest.raises(QdynInputError, match="even number of qubits"):
        hybrid.build(species=(1, 8), descriptor="power_spectrum", branch="qsf", n_qubits=3)


@pytest.mark.parametrize("family", ["hybrid", "bpnn", "multistate"])
def test_symmetry_function_models_take_a_dense_neighbor_list(family):
    from qdyn.models import bpnn, multistate

    kw = dict(species=(1, 8), cutoff=4.0, n_radial=3, hidden=(6,))
    model = {"hybrid": lambda: hybrid.build(**kw, n_qubits=2, layers=1),
             "bpnn": lambda: bpnn.build(**kw),
             "multistate": lambda: multistate.build(**kw, n_states=2, backbone="bpnn")}[family]()
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    R, system = _water_box()  # 8 waters, 9.2 Å box, cutoff 4 Å
    ef = jax.jit(jax.value_and_grad(model.apply, argnums=1))
    E0, g0 = ef(params, R, system, None)
    nbrs = neighbor_list_fn(system.box, 4.0, skin=0.3, format="dense").allocate(R)
    E1, g1 = ef(params, R, system, nbrs)
    np.testing.assert_allclose(float(E1), float(E0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), atol=1e-10)
    assert float(jnp.max(jnp.abs(g0))) > 1e-3  # non-trivial forces
    sparse = neighbor_list_fn(system.box, 4.0, format="sparse").allocate(R)
    with pytest.raises(QdynInputError, match="Dense"):
        model.apply(params, R, system, sparse)


@pytest.mark.slow
def test_variants_build_from_config_and_train(tmp_path):
    from qdyn.data import load_shipped
    from qdyn.models import build_model
    from qdyn.train import parse_config, train

    raw = {"family": "hybrid", "descriptor": "power_spectrum", "branch": "qsf", "n_qubits": 2, "layers": 1,
           "hidden": [4], "cutoff": 4.0, "n_radial": 3, "l_max": 1}
    cfg = parse_config({"model": raw, "data": {"n_train": 16, "n_val": 4, "n_test": 4}, "epochs": 2,
                        "batch_size": 8, "staged": True, "pretrain_epochs": 1})
    model = build_model({**cfg.model.model_dump(), "species": [1, 8]})
    assert model.config["branch"] == "qsf" and model.config["descriptor"] == "power_spectrum"
    R, system = water_dimer()
    G = jax.jit(model.features)(jnp.asarray(R), system)  # what training standardises (jitted: cheaper than eager)
    assert G.shape == (len(R), model.config["descriptor_size"])
    assert np.max(np.abs(np.asarray(G))) > 1e-2
    res = train(cfg, tmp_path, progress=False, data=load_shipped("water_dimer").subset(np.arange(24)))
    assert not res.interrupted
    assert np.isfinite(res.metrics["test"]["energy_mae_meV"]) and np.isfinite(res.metrics["test"]["force_mae_meV_per_A"])
    assert (tmp_path / "metrics.json").exists() and res.model.config["branch"] == "qsf"
