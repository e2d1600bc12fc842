"""Samplers: thermal normal modes (with rigid-body intermolecular modes), scans, clusters."""

import numpy as np
import pytest

from qdyn import structures, units
from qdyn.data import samplers
from qdyn.validation import QdynInputError


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def spring_hessian(R, pairs):
    """Hessian [3N, 3N] eV/Å² of harmonic springs k/2 (|r_i - r_j| - d0)² at their rest lengths."""
    n = len(R)
    H = np.zeros((n, 3, n, 3))
    for i, j, k in pairs:
        u = R[j] - R[i]
        u /= np.linalg.norm(u)
        blk = k * np.outer(u, u)
        H[i, :, i] += blk
        H[j, :, j] += blk
        H[i, :, j] -= blk
        H[j, :, i] -= blk
    return H.reshape(3 * n, 3 * n)


def dimer_model():
    """Water dimer geometry with stiff intramolecular and very soft intermolecular springs."""
    R, system = structures.water_dimer()
    Z = np.asarray(system.species)
    stiff = [(0, 1, 50.0), (0, 2, 50.0), (1, 2, 10.0), (3, 4, 50.0), (3, 5, 50.0), (4, 5, 10.0)]
    soft = [(2, 3, 0.02), (0, 3, 0.02), (1, 4, 0.01)]
    return Z, R, spring_hessian(R, stiff + soft)


def test_diatomic_frequency_and_classical_variance():
    R0, system = structures.lih()
    Z = np.asarray(system.species)
    k = 6.0  # eV/Å²
    H = spring_hessian(R0, [(0, 1, k)])
    va = samplers.vibrational_analysis(Z, R0, H)
    mu = 1 / (1 / 6.94 + 1 / 1.008)
    assert len(va.omega_intra) == 1 and len(va.omega_inter) == 0  # 3N - 5 for a linear molecule
    np.testing.assert_allclose(va.omega_intra[0], np.sqrt(k / mu), rtol=1e-10)
    T = 500.0
    X = samplers.thermal_normal_modes(Z, R0, H, n=4000, temperatures=T, seed=0)
    d = np.linalg.norm(X[:, 1] - X[:, 0], axis=1)
    # Harmonic Boltzmann: <(d - d0)²> = kT / k (to first order in the displacement).
    np.testing.assert_allclose(d.std(), np.sqrt(units.temperature_to_energy(T) / k), rtol=0.05)
    np.testing.assert_allclose(d.mean(), 1.595, atol=0.01)


def test_wigner_includes_zero_point_motion():
    R0, system = structures.lih()
    Z = np.asarray(system.species)
    H = spring_hessian(R0, [(0, 1, 6.0)])
    cold = samplers.thermal_normal_modes(Z, R0, H, n=3000, temperatures=10.0, seed=0, distribution="wigner")
    classical = samplers.thermal_normal_modes(Z, R0, H, n=3000, temperatures=10.0, seed=0)
    d_w = np.linalg.norm(cold[:, 1] - cold[:, 0], axis=1).std()
    d_c = np.linalg.norm(classical[:, 1] - classical[:, 0], axis=1).std()
    assert d_w > 5 * d_c  # at 10 K the zero-point spread dominates
    mu = 1 / (1 / 6.94 + 1 / 1.008)
    omega = np.sqrt(6.0 / mu)
    hbar = units.HBAR_EV_S / (units.TIME_UNIT_FS * 1e-15)
    np.testing.assert_allclose(d_w, np.sqrt(hbar / (2 * mu * omega)), rtol=0.05)


def test_thermal_sampling_is_reproducible_and_seeded():
    Z, R, H = dimer_model()
    a = samplers.thermal_normal_modes(Z, R, H, n=5, temperatures=(300, 1000), seed=1)
    b = samplers.thermal_normal_modes(Z, R, H, n=5, temperatures=(300, 1000), seed=1)
    c = samplers.thermal_normal_modes(Z, R, H, n=5, temperatures=(300, 1000), seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_soft_intermolecular_modes_move_molecules_rigidly():
    Z, R, H = dimer_model()
    kw = dict(n=300, temperatures=1000.0, seed=0, random_orientation=False)
    rigid = samplers.thermal_normal_modes(Z, R, H, **kw)
    naive = samplers.thermal_normal_modes(Z, R, H, frags=[np.arange(6)], **kw)  # one "molecule": linear steps
    va = samplers.vibrational_analysis(Z, R, H)
    assert len(va.omega_intra) == 6 and len(va.omega_inter) == 6  # 3 per water; 12 - 6 rigid-body
    assert np.all(va.wavenumbers_inter < 100) and np.all(va.wavenumbers_intra > 1000)

    def oh(X):
        return np.linalg.norm(X[:, [1, 2, 4, 5]] - X[:, [0, 0, 3, 3]], axis=-1)

    oh0 = oh(R[None])
    # Non-trivial: the molecules really move (O–O spread of tenths of an Å, large rotations) ...
    oo = np.linalg.norm(rigid[:, 3] - rigid[:, 0], axis=1)
    assert oo.std() > 0.1
    # ... yet bonds only feel the stiff intramolecular modes, while linear steps along the
    # same soft modes stretch them far more.
    assert np.abs(oh(rigid) - oh0).std() < 0.05
    assert np.abs(oh(naive) - oh0).std() > 3 * np.abs(oh(rigid) - oh0).std()


def test_thermal_sampling_of_clusters_rejects_clashes():
    Z, R, H = dimer_model()
    kw = dict(n=200, temperatures=3000.0, seed=0, random_orientation=False)
    rc = np.array([samplers.COVALENT_RADII[z] for z in Z])
    limit = 1.5 * (rc[:3, None] + rc[None, 3:])

    def min_ratio(X):
        return (np.linalg.norm(X[:, :3, None] - X[:, None, 3:], axis=-1) / limit).min()

    assert min_ratio(samplers.thermal_normal_modes(Z, R, H, clash_scale=0.0, **kw)) < 1  # hot: contacts happen
    assert min_ratio(samplers.thermal_normal_modes(Z, R, H, clash_scale=1.5, **kw)) >= 1


def test_random_orientation_preserves_internal_geometry():
    R, _ = structures.water()
    Z = np.array([8, 1, 1])
    H = spring_hessian(R, [(0, 1, 50.0), (0, 2, 50.0), (1, 2, 10.0)])
    X = samplers.thermal_normal_modes(Z, R, H, n=3, temperatures=1.0, seed=0, random_orientation=True)
    for x in X:
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        d0 = np.linalg.norm(R[:, None] - R[None], axis=-1)
        np.testing.assert_allclose(d, d0, atol=0.01)  # 1 K: tiny vibrations
    assert not np.allclose(X[0], X[1], atol=0.1)  # orientations differ


def test_scan():
    R0, _ = structures.water()
    X = samplers.scan(R0, atoms=(0, 1), values=[0.8, 1.0, 1.5])
    np.testing.assert_allclose(np.linalg.norm(X[:, 1] - X[:, 0], axis=1), [0.8, 1.0, 1.5], rtol=1e-14)
    np.testing.assert_array_equal(X[:, 2], np.repeat(R0[None, 2], 3, axis=0))


def test_cluster_sampler_distances_and_clashes():
    Rw, _ = structures.water()
    Z = np.array([8, 1, 1])
    X = samplers.cluster_configurations([(Z, Rw), (Z, Rw)], n=200, distance_range=(2.5, 6.0), seed=0,
                                        reference_atoms=[0, 0], clash_scale=1.5)
    oo = np.linalg.norm(X[:, 3] - X[:, 0], axis=1)
    assert oo.min() >= 2.5 and oo.max() <= 6.0 and oo.std() > 0.5
    rc = np.array([samplers.COVALENT_RADII[z] for z in np.concatenate([Z, Z])])
    d = np.linalg.norm(X[:, :3, None] - X[:, None, 3:], axis=-1)
    assert np.all(d >= 1.5 * (rc[:3, None] + rc[None, 3:]))
    # Internal geometry kept.
    np.testing.assert_allclose(np.linalg.norm(X[:, 4] - X[:, 3], axis=1), 0.9572, rtol=1e-12)
    again = samplers.cluster_configurations([(Z, Rw), (Z, Rw)], n=200, distance_range=(2.5, 6.0), seed=0,
                                            reference_atoms=[0, 0], clash_scale=1.5)
    np.testing.assert_array_equal(X, again)


def test_cluster_template_keeps_the_hydrogen_bond_orientation():
    R, system = structures.water_dimer()
    Z = np.asarray(system.species)
    pools = [(Z[:3], R[:3]), (Z[3:], R[3:])]
    X = samplers.cluster_configurations(pools, n=50, distance_range=(2.8, 3.0), seed=0, orientation="template",
                                        template=R, rotation_std_deg=5.0, reference_atoms=[0, 0])
    # The donor H stays between the two oxygens: angle O-H...O close to linear.
    v1 = X[:, 0] - X[:, 2]
    v2 = X[:, 3] - X[:, 2]
    cos = np.sum(v1 * v2, 1) / np.linalg.norm(v1, axis=1) / np.linalg.norm(v2, axis=1)
    assert np.all(cos < -0.8)


def test_cluster_sampler_gives_up_clearly():
    Rw, _ = structures.water()
    Z = np.array([8, 1, 1])
    with pytest.raises(RuntimeError, match="clashed"):
        samplers.cluster_configurations([(Z, Rw), (Z, Rw)], n=1, distance_range=(0.5, 0.6), seed=0,
                                        reference_atoms=[0, 0], max_tries=50)


def test_fragments():
    R, system = structures.water_dimer()
    frags = samplers.fragments(np.asarray(system.species), R)
    assert [f.tolist() for f in frags] == [[0, 1, 2], [3, 4, 5]]


def test_md_sampler_hook_is_validated():
    R0, _ = structures.water()
    Z = np.array([8, 1, 1])

    def good(Z, R0, *, n, seed):
        rng = np.random.default_rng(seed)
        return R0[None] + 0.01 * rng.normal(size=(n,) + R0.shape)

    def bad_shape(Z, R0, *, n, seed):
        return np.zeros((n, 2, 3))

    def nan(Z, R0, *, n, seed):
        out = np.repeat(R0[None], n, axis=0)
        out[1, 2, 0] = np.nan
        return out

    assert isinstance(good, samplers.MDSampler)
    assert samplers.run_md_sampler(good, Z, R0, n=4, seed=0).shape == (4, 3, 3)
    with pytest.raises(QdynInputError, match="shape"):
        samplers.run_md_sampler(bad_shape, Z, R0, n=4, seed=0)
    with pytest.raises(QdynInputError, match=r"frame 1.*atom 2"):
        samplers.run_md_sampler(nan, Z, R0, n=4, seed=0)


def test_optimize_and_hessian_with_pyscf():
    from qdyn.data.labelers import PySCFLabeler

    lab = PySCFLabeler(method="HF", basis="sto-3g")
    Z = np.array([1, 1])
    R = samplers.optimize_geometry(lab, Z, np.array([[0, 0, 0], [0.0, 0.1, 0.8]]), fmax=1e-4)
    np.testing.assert_allclose(np.linalg.norm(R[1] - R[0]), 0.7122, atol=1e-3)  # HF/STO-3G r_e of H2
    H = lab.hessian(Z, R)
    np.testing.assert_allclose(H, samplers.finite_difference_hessian(lab, Z, R), atol=5e-3 * np.abs(H).max())
    wn = samplers.vibrational_analysis(Z, R, H).wavenumbers_intra
    np.testing.assert_allclose(wn, [5481], rtol=0.01)  # HF/STO-3G harmonic frequency of H2
