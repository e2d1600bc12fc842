"""Long-range electrostatics (qdyn.models.electrostatics): Ewald against known Madelung constants
and a direct lattice sum, exact total charge, the physics battery on models with the term, and
the dipole-dipole limit that a short-range model cannot produce."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.models import build_model
from qdyn.descriptors.neighbors import neighbor_list_fn
from qdyn.models.electrostatics import (ElectrostaticsSettings, EwaldSettings, check_ewald_box, coulomb_matrix,
                                        dipole_moment, ewald_parameters, neutral_charges, qeq_charges,
                                        with_electrostatics)
from qdyn.structures import rattle, water, water_box, water_dimer
from qdyn.system import System
from qdyn.units import COULOMB_EV_A
from qdyn.validation import QdynInputError

NACL_MADELUNG = 1.747564594633182  # per ion pair, nearest-neighbour distance
CSCL_MADELUNG = 1.762674773070988
POINT_WIDTH = 0.05  # Å: Gaussian charges this narrow are point charges at ≥ 1 Å (erfc(10) ~ 1e-45)


def _phi(R, mask, box, *, width, ewald=None):
    """coulomb_matrix compiled once per call (eager, its dozens of small ops each compiled)."""
    return np.asarray(jax.jit(lambda R, mask, box: coulomb_matrix(R, mask, box, width=width, ewald=ewald))(
        jnp.asarray(R), jnp.asarray(mask), None if box is None else jnp.asarray(box)))


def _madelung(R, box, q, d, ewald):
    """Madelung constant of a neutral cell from the Ewald Coulomb matrix (Gaussian self-energies removed)."""
    check_ewald_box(box, ewald)
    phi = _phi(R, np.ones(len(R), bool), box, width=POINT_WIDTH, ewald=ewald_parameters(ewald))
    energy = 0.5 * q @ np.asarray(phi) @ q - np.sum(q**2) / (2 * POINT_WIDTH * math.sqrt(math.pi))
    return -energy * d / (len(R) / 2)


def _evjen_nacl(n: int) -> float:
    """Direct lattice sum around one ion of rock salt over the cube |i|,|j|,|k| ≤ n, boundary ions
    weighted 1/2 (faces), 1/4 (edges), 1/8 (corners) so every shell is neutral (Evjen 1932)."""
    g = np.arange(-n, n + 1)
    i, j, k = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(i**2 + j**2 + k**2)
    w = 0.5 ** ((np.abs(i) == n).astype(int) + (np.abs(j) == n) + (np.abs(k) == n))
    sign = (-1.0) ** (i + j + k)
    keep = r > 0
    return float(-np.sum((w * sign)[keep] / r[keep]))


def test_ewald_gives_the_madelung_constants_of_rock_salt_and_caesium_chloride():
    a = 2.0  # cubic lattice constant, Å
    # two-ion primitive cell of rock salt: a triclinic box (fcc lattice vectors)
    fcc = a / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], float).T
    nacl = _madelung(np.array([[0, 0, 0], [a / 2, 0, 0]]), fcc, np.array([1.0, -1.0]), a / 2,
                     EwaldSettings(real_cutoff=2.0, images=3, k_max=8))
    cscl = _madelung(np.array([[0, 0, 0], [a / 2] * 3]), a * np.eye(3), np.array([1.0, -1.0]), a * math.sqrt(3) / 2,
                     EwaldSettings(real_cutoff=2.5, images=2, k_max=8))
    np.testing.assert_allclose(nacl, NACL_MADELUNG, rtol=1e-10)
    np.testing.assert_allclose(cscl, CSCL_MADELUNG, rtol=1e-10)
    # and the direct lattice sum agrees with both (it converges slowly: 1e-4 at n = 16)
    np.testing.assert_allclose(_evjen_nacl(16), nacl, rtol=1e-4)
    assert abs(_evjen_nacl(16) - _evjen_nacl(4)) > 1e-4  # the direct sum is still converging: a real comparison


def test_ewald_does_not_depend_on_its_splitting_parameter():
    """The same periodic Coulomb energy from two real-space cutoffs (two α): the split is exact."""
    R, species, side = water_box(2)
    q = np.tile([-0.8, 0.4, 0.4], len(species) // 3)
    box = jnp.asarray(np.diag(side))
    mask = jnp.ones(len(species), bool)
    energies = []
    for ewald in (EwaldSettings(real_cutoff=5.0, images=1, k_max=7), EwaldSettings(real_cutoff=8.0, images=2, k_max=4)):
        check_ewald_box(box, ewald)
        phi = _phi(R, mask, box, width=0.8, ewald=ewald_parameters(ewald))
        energies.append(0.5 * COULOMB_EV_A * float(q @ np.asarray(phi) @ q))
    np.testing.assert_allclose(energies[0], energies[1], rtol=1e-7)


def test_the_box_check_names_the_setting_to_raise():
    with pytest.raises(QdynInputError, match="images: 2"):
        check_ewald_box(4.0 * np.eye(3), EwaldSettings(real_cutoff=8.0, images=1, k_max=16))
    with pytest.raises(QdynInputError, match="k_max"):
        check_ewald_box(30.0 * np.eye(3), EwaldSettings(real_cutoff=8.0, images=1, k_max=2))


def test_total_charge_holds_exactly_with_padding():
    rng = np.random.default_rng(0)
    mask = jnp.asarray([True] * 5 + [False] * 2)
    raw = jnp.asarray(rng.normal(size=7))
    R = jnp.asarray(rng.normal(size=(7, 3)) * 2.0)
    phi = jnp.asarray(_phi(R, mask, None, width=0.8))
    neutral, qeq = jax.jit(neutral_charges), jax.jit(qeq_charges)
    for total in (0.0, -1.0):
        q_n = neutral(raw, mask, total)
        q_e = qeq(raw, jnp.full(7, 8.0), phi, mask, total)
        for q in (q_n, q_e):
            assert abs(float(jnp.sum(q)) - total) < 1e-13
            assert float(jnp.max(jnp.abs(q[5:]))) == 0.0
        assert float(jnp.std(q_e[:5])) > 1e-3  # charges really differ per atom


@pytest.fixture(scope="module")
def qeq_model():
    model = build_model({"family": "bpnn", "hidden": [4], "n_radial": 3, "cutoff": 4.0,
                         "electrostatics": {"scheme": "qeq", "hidden": [4]}}, species=(1, 8))
    params = testing.randomize_params(jax.jit(model.init)(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    return model, params


def test_a_model_with_qeq_passes_the_physics_battery(qeq_model):
    """The checks share one compiled E+F of the dimer (testing._ef); padding is exercised by
    the dipole-dipole test below (padded monomers in the dimer's shape)."""
    model, params = qeq_model
    R, system = water_dimer()
    R = jnp.asarray(rattle(R, 0))
    testing.assert_nontrivial(model, params, R, system)
    # the long-range part itself is non-trivial: charges of a few tenths of e
    q = jax.jit(model.charges)(params, R, system)
    assert 0.01 < float(jnp.max(jnp.abs(q))) < 2.0
    testing.assert_e3_invariant(model, params, R, system, n_trials=2)
    testing.assert_permutation_invariant(model, params, R, system, [3, 5, 4, 0, 2, 1])
    testing.assert_forces_match_fd(model, params, R, system, n_dirs=2)
    testing.assert_second_order_gradient(model, params, R, system)
    testing.assert_net_force_zero(model, params, R, system)
    testing.assert_no_retrace(model, params, R, system)
    # the config rebuilds the same model (same parameter tree; the electrostatics settings kept)
    again = build_model(model.config)
    assert again.name == model.name and again.config == model.config
    shapes = jax.eval_shape(again.init, jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(params)


def test_charges_reach_beyond_the_cutoff_dipole_dipole_limit(qeq_model):
    """Two waters 40 Å apart (10 cutoffs): the short-range part is blind, the electrostatic
    interaction is the point-dipole one, k_e [μA·μB - 3(μA·n)(μB·n)]/R³. The monomers are
    evaluated padded to the dimer's six atoms: a padding atom that carried charge or energy
    would spoil the agreement."""
    model, params = qeq_model
    (R1, _), n = water(), np.array([0.0, 0.0, 1.0])
    R2 = R1 @ testing.random_orthogonal(jax.random.PRNGKey(3)).T
    dimer = System.create(["O", "H", "H", "O", "H", "H"])
    mono = System.create(["O", "H", "H"]).pad(6)
    sep = 40.0
    ef, charges = testing._ef(model), jax.jit(model.charges)
    E = lambda R, s: float(ef(params, jnp.asarray(R), s)[0])  # noqa: E731
    pad = lambda R: np.concatenate([R, np.zeros((3, 3))])  # noqa: E731
    E_int = E(np.concatenate([R1, R2 + sep * n]), dimer) - E(pad(R1), mono) - E(pad(R2), mono)
    mu1, mu2 = (np.asarray(dipole_moment(charges(params, jnp.asarray(pad(R)), mono), jnp.asarray(pad(R)), mono.mask))
                for R in (R1, R2))
    expected = COULOMB_EV_A * (mu1 @ mu2 - 3 * (mu1 @ n) * (mu2 @ n)) / sep**3
    assert abs(expected) > 1e-9  # float64 energy differences resolve ~1e-13 eV
    np.testing.assert_allclose(E_int, expected, rtol=0.05)


PERIODIC = {"family": "bpnn", "hidden": [4], "n_radial": 3, "cutoff": 3.0}
PERIODIC_ELEC = {"scheme": "neutral", "hidden": [4],
                 "ewald": {"accuracy": 1e-5, "real_cutoff": 6.0, "images": 1, "k_max": 4}}


def test_a_periodic_model_reads_one_descriptor_dense_or_neighbour_list_and_is_image_consistent():
    model = build_model({**PERIODIC, "electrostatics": PERIODIC_ELEC}, species=(1, 8))
    params = testing.randomize_params(jax.jit(model.init)(jax.random.PRNGKey(2)), jax.random.PRNGKey(3), scale=0.3)
    R, species, side = water_box(2)
    system = System.create(species, box=np.diag(side))
    R = jnp.asarray(np.mod(rattle(R, 1), side))
    model.check(R, system)
    E, F = testing._ef(model)(params, R, system)  # the compiled E+F every check below shares
    # the charge head reads the short-range model's own descriptor (one evaluation): the same
    # energy as a head that recomputes the descriptor itself, as the first version did
    short = build_model(PERIODIC, species=(1, 8))

    def recomputed(p, R, system, neighbor=None):
        G = (short.features(R, system) - p["g_mean"][None, :]) / p["g_std"][None, :]
        return short.atom_energies(p, R, system, neighbor), G

    separate = with_electrostatics(short._replace(atom_terms=recomputed), ElectrostaticsSettings(**PERIODIC_ELEC))
    np.testing.assert_allclose(float(jax.jit(separate.apply)(params, R, system)), float(E), rtol=0, atol=1e-10)
    # on a JAX-MD neighbour list (the periodic-box path): the same energy
    nbrs = neighbor_list_fn(system.box, PERIODIC["cutoff"], skin=0.3).allocate(R)
    assert nbrs.idx.shape[1] < len(species) - 1  # a real list, not every pair
    E_nl = jax.jit(model.apply)(params, R, system, nbrs)
    np.testing.assert_allclose(float(E_nl), float(E), rtol=0, atol=1e-10)
    testing.assert_periodic_image_invariant(model, params, R, system)
    testing.assert_forces_match_fd(model, params, R, system, n_dirs=2)
    testing.assert_no_retrace(model, params, R, system)


def test_families_without_per_atom_descriptors_refuse_electrostatics():
    with pytest.raises(QdynInputError, match="electrostatics"):
        build_model({"family": "sivqlm", "template": "H2O", "electrostatics": {}})


def test_the_dipole_loss_measures_the_dipole_error(qeq_model):
    """loss_dipole = mean |μ_model - μ_ref|²/3 / σ_D², from the model's own charges."""
    from qdyn.data import load_shipped
    from qdyn.train.batches import make_batch
    from qdyn.train.losses import make_loss_fn

    model, params = qeq_model
    ds = load_shipped("water_dimer").subset(np.arange(2))
    charges = jax.jit(model.charges)  # the dimer's shape: compiled once in this module
    q = np.stack([charges(params, jnp.asarray(R), water_dimer()[1]) for R in ds.R])
    mu = np.asarray(jax.vmap(dipole_moment)(jnp.asarray(q), jnp.asarray(ds.R), jnp.ones((2, 6), bool)))
    assert np.abs(mu).max() > 1e-3
    ds.extras["dipole"] = mu + np.array([0.1, 0.0, 0.0])
    loss = make_loss_fn(model.apply, sigma_E=1.0, sigma_F=1.0, charges=model.charges, dipole_weight=2.0, sigma_D=0.5)
    zero = jnp.asarray(0.0)
    total, aux = jax.jit(loss)(params, make_batch(ds, np.arange(2), 2), zero, zero, zero)
    np.testing.assert_allclose(float(aux["loss_dipole"]), (0.1 / 0.5) ** 2 / 3, rtol=1e-10)
    np.testing.assert_allclose(float(total), 2.0 * float(aux["loss_dipole"]), rtol=1e-12)


def test_evaluation_chunks_of_large_frames_stay_small():
    """predict pads every chunk to the same frame count; for a 96-atom box that held 5 GB
    (64 frames of a dense periodic descriptor). Large frames get small chunks, small ones keep
    the one shared shape."""
    from qdyn.data import Dataset
    from qdyn.train.trainer import EVAL_CHUNK, eval_chunk

    def frames(n, atoms):
        return Dataset(R=np.zeros((n, atoms, 3)), Z=np.ones((n, atoms), int))

    assert eval_chunk(frames(3, 9)) == EVAL_CHUNK  # molecules: one compiled shape for every split
    assert eval_chunk(frames(4, 96)) == 4  # no padding past the data
    assert eval_chunk(frames(500, 96)) * 96 <= 2048
    assert eval_chunk(frames(2, 5000)) == 1
