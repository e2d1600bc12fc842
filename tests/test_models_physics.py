"""Every model through qdyn.testing: invariances with non-triviality checks, forces against
finite differences, second-order gradients, padding, vmap, no retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.models import generic, sivqlm
from qdyn.models.base import batch_energy_and_forces, energy_and_forces
from qdyn.structures import water_lattice, lih, rattle, water, water_dimer

MOLECULES = {
    "LiH": (lih, [], dict(layers=4, blocks=2)),
    "H2O": (water, [[0, 2, 1]], dict(layers=6)),
    "water_dimer": (water_dimer, [[0, 2, 1, 3, 4, 5], [0, 1, 2, 3, 5, 4], [3, 4, 5, 0, 1, 2], [3, 5, 4, 0, 2, 1]],
                    dict(layers=3)),
}


def _setup(name, seed=0, **overrides):
    make, perms, kw = MOLECULES[name]
    R, system = make()
    model = sivqlm.build(name, **{**kw, **overrides})
    params = testing.randomize_params(model.init(jax.random.PRNGKey(seed)), jax.random.PRNGKey(seed + 1))
    # rattled: no accidental mirror symmetry of the geometry can hide a chirality error
    return model, params, jnp.asarray(rattle(R, seed)), system, perms


@pytest.mark.parametrize("name", list(MOLECULES))
def test_sivqlm_passes_all_physics_checks(name):
    model, params, R, system, perms = _setup(name)
    report = testing.check_model(model, params, R, system, permutations=perms, atol=1e-10)
    assert report["e3"]["energy_error"] < 1e-10


def test_generic_control_is_measurably_not_invariant():
    model = generic.build("H2O", layers=6)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    R, system = water()
    R = jnp.asarray(rattle(R, 0))
    testing.assert_nontrivial(model, params, R, system)
    dE, dF = testing.invariance_errors(model, params, R, system)
    assert dE > 1e-3 and dF > 1e-3, (dE, dF)
    with pytest.raises(AssertionError, match="not invariant"):
        testing.assert_e3_invariant(model, params, R, system)
    dE_perm, _ = testing.permutation_errors(model, params, R, system, [0, 2, 1])
    assert dE_perm > 1e-3
    # What the control does respect: translation (central atom), and F = -∇E.
    testing.assert_translation_invariant(model, params, R, system)
    testing.assert_forces_match_fd(model, params, R, system)


def test_dimer_needs_parity_average_for_reflections():
    """With six encoded vectors the bare circuit is chiral: invariant under proper rotations
    but not under reflections. The parity average restores full O(3) invariance."""
    model, params, R, system, _ = _setup("water_dimer", parity_average=False)
    dE_rot, _ = testing.invariance_errors(model, params, R, system, reflection=False)
    dE_ref, _ = testing.invariance_errors(model, params, R, system, reflection=True)
    assert dE_rot < 1e-10
    assert dE_ref > 1e-6, dE_ref


def test_symmetry_breaking_breaks_rotation_only_when_nonzero():
    model, params, R, system, perms = _setup("H2O", symmetry_breaking=True)
    zero = {**params, "eps": jnp.zeros_like(params["eps"])}
    testing.assert_e3_invariant(model, zero, R, system)
    dE, _ = testing.invariance_errors(model, params, R, system)
    assert dE > 1e-4
    # ε is tied on qubit orbits: like-atom exchange stays exact
    testing.assert_permutation_invariant(model, params, R, system, perms[0])


def test_pennylane_backend_equals_statevector_model():
    model_sv, params, R, system, _ = _setup("H2O", layers=3)
    model_pl = sivqlm.build("H2O", layers=3, execution={"backend": "pennylane"})
    E1, F1 = energy_and_forces(model_sv, params, R, system)
    E2, F2 = energy_and_forces(model_pl, params, R, system)
    np.testing.assert_allclose(float(E1), float(E2), atol=1e-10)
    np.testing.assert_allclose(np.asarray(F1), np.asarray(F2), atol=1e-10)


@pytest.mark.parametrize("name", ["H2O", "water_dimer"])
def test_vmap_equals_loop_and_batch_api(name):
    model, params, R, system, _ = _setup(name)
    Rs = np.stack([rattle(np.asarray(R), s, 0.03) for s in range(5)])
    testing.assert_vmap_matches_loop(model, params, Rs, system)
    E, F = batch_energy_and_forces(model, params, Rs, system, chunk=2)  # 3 chunks, last padded
    for i in range(5):
        E1, F1 = energy_and_forces(model, params, Rs[i], system)
        np.testing.assert_allclose(E[i], float(E1), atol=1e-12)
        np.testing.assert_allclose(F[i], np.asarray(F1), atol=1e-12)


def test_float32_path_is_close_to_float64():
    model, params, R, system, _ = _setup("H2O")
    E64, F64 = energy_and_forces(model, params, R, system)
    p32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params)
    E32, F32 = jax.jit(jax.value_and_grad(model.apply, argnums=1))(p32, R.astype(jnp.float32), system)
    assert E32.dtype == jnp.float32
    np.testing.assert_allclose(float(E32), float(E64), atol=1e-5)
    np.testing.assert_allclose(-np.asarray(F32), np.asarray(F64), atol=1e-4)


def _bpnn(seed=0):
    from qdyn.models import bpnn

    model = bpnn.build(species=(1, 8), hidden=(8, 8), cutoff=4.0)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(seed)), jax.random.PRNGKey(seed + 1), scale=0.3)
    params["g_std"] = jnp.abs(params["g_std"]) + 0.5  # a standardisation must be positive
    return model, params


def test_bpnn_on_the_dimer_is_invariant_under_exchanges_across_molecules():
    # the full battery runs on the monomer in test_model_families; here what a monomer cannot
    # show: exchanging whole molecules and like atoms between them
    model, params = _bpnn()
    R, system = water_dimer()
    R = jnp.asarray(rattle(R, 2))
    testing.assert_e3_invariant(model, params, R, system)
    for perm in ([0, 2, 1, 3, 4, 5], [3, 4, 5, 0, 1, 2], [0, 4, 2, 3, 1, 5]):
        testing.assert_permutation_invariant(model, params, R, system, perm)


def test_bpnn_atom_energies_sum_to_total_and_are_local():
    model, params = _bpnn()
    R, system = water_dimer()
    R = jnp.asarray(rattle(R, 3))
    atom_energies = jax.jit(model.atom_energies)
    e = atom_energies(params, R, system)
    np.testing.assert_allclose(float(jnp.sum(e)), float(jax.jit(model.apply)(params, R, system)), atol=1e-12)
    # beyond the 4 Å cutoff the molecules stop seeing each other: energies become additive
    far = R.at[3:].add(jnp.array([20.0, 0.0, 0.0]))
    e_far = atom_energies(params, far, system)
    e_mono = atom_energies(params, far[:3], system.__class__.create(["O", "H", "H"]))
    np.testing.assert_allclose(np.asarray(e_far[:3]), np.asarray(e_mono), atol=1e-12)


def test_bpnn_is_smooth_across_the_cutoff():
    """Energy and force are continuous as an atom leaves the cutoff sphere (C² cutoff)."""
    model, params = _bpnn()
    from qdyn.system import System

    system = System.create(["O", "H"])
    ef = jax.jit(jax.value_and_grad(model.apply, argnums=1))
    rs = 4.0 + np.array([-1e-4, -1e-6, 0.0, 1e-6, 1e-4])
    out = [ef(params, jnp.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]]), system) for r in rs]
    E = np.array([float(o[0]) for o in out])
    Fx = np.array([float(o[1][1, 0]) for o in out])
    np.testing.assert_allclose(E, E[-1], atol=1e-9)
    np.testing.assert_allclose(Fx, 0.0, atol=1e-6)


def test_hybrid_on_the_dimer_is_invariant_and_its_circuit_branch_matters():
    from qdyn.models import hybrid

    model = hybrid.build(species=(1, 8), n_qubits=3, layers=2, hidden=(8,), cutoff=4.0)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    params["g_std"] = jnp.abs(params["g_std"]) + 0.5
    R, system = water_dimer()
    R = jnp.asarray(rattle(R, 4))
    testing.assert_e3_invariant(model, params, R, system)
    for perm in ([0, 2, 1, 3, 4, 5], [3, 4, 5, 0, 1, 2]):
        testing.assert_permutation_invariant(model, params, R, system, perm)
    # the circuit branch matters: switching its integration weights off changes the energy
    off = {**params, "int_q": jnp.zeros_like(params["int_q"])}
    energy = jax.jit(model.apply)
    assert abs(float(energy(params, R, system) - energy(off, R, system))) > 1e-4


def _water_box(n_side=2, spacing=4.6, seed=0):
    R, system = water_lattice(n_side, spacing=spacing, seed=seed, wrap=False)
    return jnp.asarray(R), system


@pytest.mark.parametrize("family", ["bpnn", "hybrid"])
def test_periodic_models_pass_physics_checks(family):
    from qdyn.models import bpnn, hybrid

    model = (bpnn.build(species=(1, 8), hidden=(8,), cutoff=4.0) if family == "bpnn"
             else hybrid.build(species=(1, 8), n_qubits=2, layers=1, hidden=(4,), cutoff=4.0))
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    params["g_std"] = jnp.abs(params["g_std"]) + 0.5
    R, system = _water_box()
    testing.assert_periodic_image_invariant(model, params, R, system)
    testing.assert_e3_invariant(model, params, R, system)  # the box rotates with the atoms
    testing.assert_permutation_invariant(model, params, R, system, [3, 4, 5, 0, 1, 2] + list(range(6, 24)))
    testing.assert_forces_match_fd(model, params, R, system)


def test_box_smaller_than_twice_the_cutoff_is_refused():
    from qdyn.models import bpnn
    from qdyn.models.base import energy_and_forces
    from qdyn.validation import QdynInputError

    model = bpnn.build(species=(1, 8), hidden=(8,), cutoff=5.0)
    R, system = _water_box(spacing=4.6)  # box 9.2 Å < 2 × 5 Å
    with pytest.raises(QdynInputError, match="cutoff 5.0 Å is not below half the smallest box width"):
        energy_and_forces(model, model.init(jax.random.PRNGKey(0)), R, system)
