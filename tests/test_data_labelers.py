"""PySCF and ASE labellers: forces are the derivative of the energies; failures are recorded."""


import numpy as np
import pytest

from qdyn.data.labelers import PySCFLabeler, labeler_from_spec

# A bent, off-axis LiH geometry (no symmetry hides a wrong force component).
Z_LIH = np.array([3, 1])
R_LIH = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 1.6]])
H = 1e-3  # Å; central differences have O(h²) ≈ 1e-6 relative truncation error


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def fd_forces(lab, Z, R, *, state=None):
    """Central finite differences of the labeller's energies [eV/Å], every coordinate."""
    F = np.zeros(R.shape if state is None else (lab.n_states,) + R.shape)
    for i in range(R.shape[0]):
        for a in range(3):
            d = np.zeros_like(R)
            d[i, a] = H
            rp, rm = lab.label(Z, R + d), lab.label(Z, R - d)
            assert rp.converged and rm.converged, (rp.status, rm.status)
            if state is None:
                F[i, a] = -(rp.energy - rm.energy) / (2 * H)
            else:
                F[:, i, a] = -(rp.energies_states - rm.energies_states) / (2 * H)
    return F


def fd_directional(lab, Z, R, *, states=False):
    """-dE/dv along one unit direction v (2 energies instead of 6N), and F·v.

    v mixes the force direction with a random one, so F·v is not accidentally ~0.
    """
    res = lab.label(Z, R)
    f = res.forces if not states else res.forces_states.sum(0)
    v = f / np.linalg.norm(f) + 0.5 * np.random.default_rng(1).normal(size=R.shape) / np.sqrt(R.size)
    v /= np.linalg.norm(v)
    rp, rm = lab.label(Z, R + H * v), lab.label(Z, R - H * v)
    assert res.converged and rp.converged and rm.converged
    if states:
        return -(rp.energies_states - rm.energies_states) / (2 * H), np.einsum("sij,ij->s", res.forces_states, v)
    return -(rp.energy - rm.energy) / (2 * H), float(np.sum(res.forces * v))


@pytest.mark.parametrize(
    "lab",
    [
        PySCFLabeler(method="HF", basis="sto-3g"),
        PySCFLabeler(method="DFT", xc="B3LYP", basis="sto-3g", grid_level=0),
        PySCFLabeler(method="MP2", basis="sto-3g"),
    ],
    ids=["HF", "B3LYP", "MP2"],
)
def test_forces_match_finite_differences(lab):
    res = lab.label(Z_LIH, R_LIH)
    assert res.converged and res.status == "ok"
    assert np.abs(res.forces).max() > 0.1  # non-trivial: the geometry is far from a minimum
    np.testing.assert_allclose(res.forces, fd_forces(lab, Z_LIH, R_LIH), atol=1e-3, rtol=0)


def test_grid_response_is_what_makes_dft_forces_exact():
    # On a coarse grid the missing grid-weight derivative is large; with it, forces are exact.
    kw = dict(method="DFT", xc="B3LYP", basis="sto-3g", grid_level=0)
    with_gr = PySCFLabeler(**kw)
    without = PySCFLabeler(**kw, grid_response=False)
    fd = fd_forces(with_gr, Z_LIH, R_LIH)
    assert np.abs(without.label(Z_LIH, R_LIH).forces - fd).max() > 1e-2
    assert np.abs(with_gr.label(Z_LIH, R_LIH).forces - fd).max() < 1e-4


@pytest.mark.parametrize("method", ["CCSD", "CCSD(T)"])
def test_coupled_cluster_forces_match_finite_differences(method):
    # Directional check (F·v against -dE/dv along a random v): CC energies cost more.
    fd, fv = fd_directional(PySCFLabeler(method=method, basis="sto-3g"), Z_LIH, R_LIH)
    assert abs(fv) > 0.05
    np.testing.assert_allclose(fv, fd, atol=1e-3, rtol=0)


def test_sa_casscf_state_forces_match_finite_differences():
    lab = PySCFLabeler(method="SA-CASSCF", basis="sto-3g", ncas=2, nelecas=2, n_states=2)
    res = lab.label(Z_LIH, R_LIH)
    assert res.converged and res.energies_states.shape == (2,) and res.forces_states.shape == (2, 2, 3)
    assert res.energies_states[1] > res.energies_states[0]
    np.testing.assert_array_equal(res.forces, res.forces_states[0])
    fd, fv = fd_directional(lab, Z_LIH, R_LIH, states=True)
    np.testing.assert_allclose(fv, fd, atol=1e-3, rtol=0)


def test_sa_casscf_natural_occupations_show_bond_breaking():
    # H2 in CAS(2,2): the ground state's two natural orbitals go from ~(2, 0) at the bond length
    # to ~(1, 1) at dissociation (the diradical a minimal active space must describe); every
    # state holds the two active electrons.
    lab = PySCFLabeler(method="SA-CASSCF", basis="sto-3g", ncas=2, nelecas=2, n_states=2)
    Z = np.array([1, 1])
    near, far = (lab.natural_occupations(Z, np.array([[0.0, 0.0, 0.0], [0.0, 0.0, r]])) for r in (0.74, 4.0))
    assert near.shape == far.shape == (2, 2)
    np.testing.assert_allclose(near.sum(-1), 2.0, atol=1e-8)
    np.testing.assert_allclose(far.sum(-1), 2.0, atol=1e-8)
    assert near[0, 0] > 1.9 and abs(far[0, 0] - 1.0) < 0.05
    with pytest.raises(Exception, match="SA-CASSCF"):
        PySCFLabeler(method="HF", basis="sto-3g").natural_occupations(Z, np.array([[0.0, 0, 0], [0, 0, 0.74]]))


def test_tda_states_and_forces():
    # xc="HF" makes TDA the CIS method, whose gradients are exact; PySCF's TDDFT gradients
    # with a real functional lack the grid response (recorded in metadata).
    lab = PySCFLabeler(method="TDA", xc="HF", basis="sto-3g", n_states=2)
    res = lab.label(Z_LIH, R_LIH)
    assert res.converged and res.energies_states.shape == (2,)
    np.testing.assert_allclose(res.forces_states, fd_forces(lab, Z_LIH, R_LIH, state=True), atol=1e-3, rtol=0)
    assert PySCFLabeler(method="TDA", xc="B3LYP", basis="sto-3g", n_states=2).describe()["excited_state_grid_response"] is False


@pytest.mark.slow
def test_stability_following_continues_the_ground_state_past_an_instability():
    # CaH2 bent to 45°: the closed-shell solution reached from the default guess is a saddle
    # (TDA from it has a negative root and PySCF's Davidson gives up); following the internal
    # instability lands on a lower, stable solution from which both states come out.
    from qdyn.data.samplers import triatomic

    Z, R = np.array([20, 1, 1]), triatomic(n=1, r1=2.05, r2="r1", angle_deg=45.0, mode="scan")[0]
    kw = dict(xc="B3LYP", basis="def2-SVP", grid_level=1)
    saddle = PySCFLabeler(method="DFT", **kw).label(Z, R)
    plain = PySCFLabeler(method="TDA", n_states=2, **kw).label(Z, R)
    stable = PySCFLabeler(method="TDA", n_states=2, stability=True, **kw).label(Z, R)
    assert saddle.converged and not plain.converged and "negative TDA excitation" in plain.status
    assert stable.converged, stable.status
    assert stable.energies_states[0] < saddle.energy - 0.05  # a lower solution, not the same one
    assert 0.0 < stable.energies_states[1] - stable.energies_states[0] < 1.5
    # off by default, and then absent from the description (cache keys made before it hold)
    assert "stability" not in PySCFLabeler(method="DFT", **kw).describe()
    assert PySCFLabeler(method="DFT", stability=True, **kw).describe()["stability"] is True


def test_non_convergence_is_recorded_not_hidden():
    res = PySCFLabeler(method="HF", basis="sto-3g", max_cycle=1).label(Z_LIH, R_LIH)
    assert not res.converged and res.status == "not converged: SCF"
    assert np.isfinite(res.energy)  # the unconverged numbers are kept, flagged
    res = PySCFLabeler(method="CCSD", basis="sto-3g", cc_max_cycle=1).label(Z_LIH, R_LIH)
    assert not res.converged and "CCSD amplitudes" in res.status


def test_a_failing_calculation_becomes_a_failed_frame():
    res = PySCFLabeler(method="HF", basis="sto-3g").label(Z_LIH, np.zeros((2, 3)))
    assert not res.converged and res.status.startswith("error:")
    assert np.isnan(res.energy) and np.isnan(res.forces).all()


def test_describe_records_the_level_of_theory_and_round_trips():
    lab = PySCFLabeler(method="DFT", xc="B3LYP", basis="def2-SVP")
    d = lab.describe()
    assert d["xc"] == "B3LYP" and d["grid_response"] is True and d["code"] == "pyscf"
    assert "VWN" in d["functional_note"]
    assert labeler_from_spec(d) == lab
    import json

    json.dumps(d)


@pytest.mark.parametrize(
    "kw",
    [dict(method="B3LYP", basis="sto-3g"), dict(method="DFT", basis="sto-3g"), dict(method="HF", basis="sto-3g", xc="PBE"),
     dict(method="SA-CASSCF", basis="sto-3g"), dict(method="CCSD", basis="sto-3g", spin=2)],
)
def test_bad_labeler_settings_are_refused(kw):
    with pytest.raises(ValueError):
        PySCFLabeler(**kw)


def test_ase_labeler_forces_match_finite_differences(emt_labeler):
    lab = emt_labeler
    Z = np.array([8, 1, 1])
    R = np.array([[0.0, 0.0, 0.0], [0.97, 0.1, 0.0], [-0.3, 0.9, 0.1]])
    res = lab.label(Z, R)
    assert res.converged and np.abs(res.forces).max() > 0.1
    np.testing.assert_allclose(res.forces, fd_forces(lab, Z, R), atol=1e-4)
    assert lab.describe()["method"] == "EMT"


def test_ase_labeler_failure_is_recorded(emt_labeler):
    lab = emt_labeler
    res = lab.label(np.array([92]), np.zeros((1, 3)))  # EMT has no uranium
    assert not res.converged and res.status.startswith("error:")
