"""One sweep over every registered model family (multistate included): the physics battery of
:mod:`qdyn.testing`, the config that rebuilds the model, and the declared parameter groups.

A new family registers its config class (:mod:`qdyn.models.config`); this file then refuses to
pass until the family has a small setting in ``SMALL`` below, so no family skips the battery.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.compiled import shared_jit
from qdyn.models import CLASSICAL, FIXED, QUANTUM, build_model, families, parse_model_config
from qdyn.structures import rattle, water
from qdyn.validation import QdynInputError

# Small settings per family (fast to compile), all on a water molecule.
SMALL = {
    "sivqlm": {"template": "H2O", "layers": 2},
    "generic": {"template": "H2O", "layers": 2},
    "bpnn": {"hidden": [8], "n_radial": 4},
    "hybrid": {"hidden": [8], "n_radial": 4, "n_qubits": 2, "layers": 1},
    "multistate": {"hidden": [8], "n_radial": 4, "backbone": "hybrid", "n_qubits": 2, "layers": 1},
    # a user's PennyLane qfunc (qdyn.quantum.user) on its default execution, default.qubit backprop
    "custom": {"template": "H2O", "circuit": {"qfunc": "qdyn.quantum.examples:water_exchange", "wires": 2,
                                             "weight_shapes": {"alpha": [2], "J": [2]}}},
}
INVARIANT = {"sivqlm", "bpnn", "hybrid", "multistate", "custom"}  # generic is the non-invariant control
WATER_SPECIES = (1, 8)


def _setup(family, seed=0):
    model = build_model({"family": family, **SMALL[family]}, species=WATER_SPECIES)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(seed)), jax.random.PRNGKey(seed + 1), scale=0.3)
    R, system = water()
    return model, params, jnp.asarray(rattle(R, seed)), system


def test_every_registered_family_is_in_the_sweep():
    assert set(SMALL) == set(families())


@pytest.mark.parametrize("family", sorted(SMALL))
def test_family_passes_the_physics_battery(family):
    model, params, R, system = _setup(family)
    testing.assert_nontrivial(model, params, R, system)
    if family in INVARIANT:
        report = testing.check_model(model, params, R, system, permutations=[[0, 2, 1]])
        assert report["e3"]["energy_error"] < 1e-10
    else:
        dE, _ = testing.invariance_errors(model, params, R, system)
        assert dE > 1e-4  # the control is measurably not rotation invariant
        testing.assert_translation_invariant(model, params, R, system)
        testing.assert_forces_match_fd(model, params, R, system)
        testing.assert_no_retrace(model, params, R, system)
    Rs = jnp.stack([jnp.asarray(rattle(R, s, scale=0.05)) for s in range(3)])
    testing.assert_vmap_matches_loop(model, params, Rs, system)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_config_rebuilds_the_same_model(family):
    model, params, R, system = _setup(family)
    again = build_model(model.config)
    assert again.config == model.config
    # compiled, not op by op (hundreds of one-operation compiles); a rebuilt model that lowers to
    # the same program shares its executable, and any difference in the program shows in the energy
    np.testing.assert_allclose(float(shared_jit(again.apply)(params, R, system)),
                               float(shared_jit(model.apply)(params, R, system)), rtol=1e-14)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_every_parameter_has_a_declared_group(family):
    model, params, _, _ = _setup(family)
    assert set(params) <= set(model.groups), set(params) - set(model.groups)
    labels = set(jax.tree_util.tree_leaves(model.param_labels(params)))
    assert labels <= {QUANTUM, CLASSICAL, FIXED}
    assert CLASSICAL in labels  # scale and shift at least
    assert (QUANTUM in labels) == (family != "bpnn")
    assert (FIXED in labels) == (model.features is not None)  # descriptor statistics only


def test_multistate_ground_state_is_the_lowest_eigenvalue_of_an_invariant_diabatic_matrix():
    model, params, R, system = _setup("multistate")
    W = model.diabatic(params, R, system)
    np.testing.assert_allclose(np.asarray(W), np.asarray(W).T, atol=0)
    E = model.adiabatic(params, R, system)
    np.testing.assert_allclose(np.asarray(E), np.linalg.eigvalsh(np.asarray(W)), atol=1e-12)
    np.testing.assert_allclose(float(model.apply(params, R, system)), float(E[0]), atol=0)
    Q = testing.random_orthogonal(jax.random.PRNGKey(3))
    W_rot = model.diabatic(params, R @ jnp.asarray(Q).T + 0.7, system)
    np.testing.assert_allclose(np.asarray(W_rot), np.asarray(W), atol=1e-10)
    assert abs(float(W[0, 1])) > 1e-6  # the coupling is not trivially zero


def test_keyword_builder_has_the_configs_defaults_and_rejects_misspelt_settings():
    import inspect

    from qdyn.models import hybrid, sivqlm

    sig = inspect.signature(sivqlm.build)
    assert sig.parameters["layers"].default == sivqlm.SiVQLMConfig.model_fields["layers"].default
    assert list(sig.parameters)[0] == "template"
    with pytest.raises(TypeError, match="layer"):
        sivqlm.build("H2O", layer=3)
    with pytest.raises(QdynInputError, match="layers"):
        sivqlm.build("H2O", layers=0)
    with pytest.raises(QdynInputError, match="cuttoff"):
        parse_model_config({"family": "hybrid", "cuttoff": 4.0})
    with pytest.raises(QdynInputError, match="unknown model family"):
        build_model({"family": "nope"})
    assert hybrid.build(species=(1, 8)).config["cutoff"] == hybrid.HybridConfig().cutoff


def test_the_worked_example_of_docs_architecture_builds_a_family_that_passes_the_battery():
    """docs/architecture.md shows how to add a family in one module: that code must work."""
    import importlib.util
    import pathlib
    import re

    from qdyn.models import config as model_config

    doc = (pathlib.Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    source = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "class PairMLPConfig" in b)
    spec = importlib.util.spec_from_loader("qdyn.models.pairmlp", loader=None)
    module = importlib.util.module_from_spec(spec)
    try:
        exec(compile(source, "docs/architecture.md", "exec"), module.__dict__)
        assert "pairmlp" in families()
        model = build_model({"family": "pairmlp", "hidden": [8]}, species=WATER_SPECIES)
        assert build_model(model.config).config == model.config
        params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
        R, system = water()
        R = jnp.asarray(rattle(R, 0))
        testing.assert_nontrivial(model, params, R, system)
        testing.check_model(model, params, R, system, permutations=[[0, 2, 1]])
    finally:
        model_config._REGISTRY.pop("pairmlp", None)  # keep the registry as the package defines it


def _pair_model(energy):
    """A bare EnergyModel over a pair energy, for checking that the battery can fail."""
    from qdyn.models.base import EnergyModel

    def apply(params, R, system, neighbor=None):
        return energy(params, jnp.sum((R[0] - R[1]) ** 2))

    return EnergyModel(init=lambda key: {"k": jnp.array(1.0)}, apply=apply, check=lambda R, s: None,
                       name="pair", species=(1,), config={})


def test_the_battery_fails_a_model_whose_forces_are_not_minus_the_gradient():
    @jax.custom_jvp
    def spring(k, r2):
        return k * r2

    @spring.defjvp
    def _wrong(primals, tangents):  # twice the true derivative in r²
        (k, r2), (dk, dr2) = primals, tangents
        return k * r2, dk * r2 + 2.0 * k * dr2

    from qdyn.system import System

    model = _pair_model(lambda p, r2: spring(p["k"], r2))
    R, system = jnp.array([[0.0, 0.0, 0.0], [0.9, 0.1, 0.0]]), System.create(["H", "H"])
    with pytest.raises(AssertionError, match="force ≠ -∇E"):
        testing.assert_forces_match_fd(model, model.init(None), R, system)


def test_the_battery_fails_a_model_that_recompiles_for_new_parameter_values():
    from qdyn.system import System

    model = _pair_model(lambda p, r2: p["k"] * r2)
    params = {"k": jnp.array(2, dtype=jnp.int32)}  # new values (×1.01) arrive as floats: a new trace
    R, system = jnp.array([[0.0, 0.0, 0.0], [0.9, 0.1, 0.0]]), System.create(["H", "H"])
    with pytest.raises(AssertionError, match="retraced 1 time"):
        testing.assert_no_retrace(model, params, R, system)
    testing.assert_no_retrace(model, {"k": jnp.array(2.0)}, R, system)  # float params: one trace
