"""Organic and organometallic data (issue 21): starting geometries, the torsion and xTB-MD
samplers, and the shipped ethanol, malonaldehyde, alanine-dipeptide and ferrocene sets."""

import numpy as np
import pytest

from qdyn.data import load_shipped, recipes, samplers
from qdyn.data.molecules import MOLECULES, from_zmatrix

pytest.importorskip("tblite")

ORGANIC_SETS = ("ethanol", "ethanol_torsions", "malonaldehyde", "alanine_dipeptide", "alanine_dipeptide_rama",
                "ferrocene")


def _dihedral(a, b, c, d):
    b0, b1, b2 = a - b, c - b, d - c
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - b0 @ b1 * b1, b2 - b2 @ b1 * b1
    return np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w))


def test_zmatrix_reproduces_its_internal_coordinates():
    Z, R = from_zmatrix([(6,), (6, (0, 1.5)), (8, (1, 1.4), (0, 109.0)), (1, (2, 0.97), (1, 107.0), (0, -65.0))])
    assert np.linalg.norm(R[3] - R[2]) == pytest.approx(0.97)
    u, v = R[1] - R[2], R[3] - R[2]
    assert np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))) == pytest.approx(107.0)
    assert _dihedral(R[0], R[1], R[2], R[3]) == pytest.approx(-65.0)


@pytest.mark.parametrize("name", sorted(MOLECULES))
def test_molecules_are_one_bonded_molecule_without_clashes(name):
    Z, R = MOLECULES[name]()
    assert len(samplers.fragments(Z, R)) == 1
    d = np.linalg.norm(R[:, None] - R[None], axis=-1) + 10 * np.eye(len(Z))
    assert d.min() > 0.9  # no two atoms closer than an O-H bond


def test_torsion_scan_turns_only_the_dihedral():
    Z, R = MOLECULES["ethanol"]()
    X = samplers.torsion_scan(R, axis=(1, 2), move=[3], angles_deg=[0.0, 90.0, 200.0])
    np.testing.assert_allclose(X[0], R, atol=1e-12)
    fixed = [i for i in range(len(Z)) if i != 3]
    np.testing.assert_allclose(X[:, fixed], np.broadcast_to(R[fixed], X[:, fixed].shape), atol=1e-12)
    for x, turn in zip(X, (0.0, 90.0, 200.0)):
        assert np.linalg.norm(x[3] - x[2]) == pytest.approx(np.linalg.norm(R[3] - R[2]))
        change = _dihedral(*x[[0, 1, 2, 3]]) - _dihedral(*R[[0, 1, 2, 3]])
        assert (change - turn + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-9)


def test_dihedral_gradient_is_the_derivative_and_set_dihedral_turns_one_side_rigidly():
    from qdyn.data.dihedral_grid import dihedral, dihedral_gradient, set_dihedral

    Z, R = MOLECULES["alanine_dipeptide"]()
    phi, psi = [1, 3, 5, 6], [3, 5, 6, 8]
    assert np.degrees(dihedral(R, phi)) == pytest.approx(_dihedral(*R[phi]))
    h, v = 1e-6, np.random.default_rng(0).normal(size=R.shape)
    fd = (dihedral(R + h * v, psi) - dihedral(R - h * v, psi)) / (2 * h)
    assert np.sum(dihedral_gradient(R, psi) * v) == pytest.approx(fd, rel=1e-7)
    X = set_dihedral(Z, R, phi, np.radians(60.0))
    assert np.degrees(dihedral(X, phi)) == pytest.approx(60.0)
    assert np.degrees(dihedral(X, psi)) == pytest.approx(np.degrees(dihedral(R, psi)))  # ψ untouched
    # every interatomic distance within each side of the N-Cα bond is kept; the acetyl side did not move
    d = lambda Y: np.linalg.norm(Y[:, None] - Y[None], axis=-1)  # noqa: E731
    acetyl = [0, 1, 2, 3, 4, 13, 14, 15]
    rest = [i for i in range(len(Z)) if i not in acetyl]
    np.testing.assert_allclose(X[acetyl], R[acetyl], atol=1e-12)
    np.testing.assert_allclose(d(X[rest]), d(R[rest]), atol=1e-10)


def test_dihedral_grid_frames_sit_in_their_cells_as_bonded_molecules():
    from qdyn.data.dihedral_grid import dihedral, dihedral_grid_frames, grid_targets
    from qdyn.data.labelers import TBLiteLabeler

    Z, R = MOLECULES["alanine_dipeptide"]()
    dihedrals = [[1, 3, 5, 6], [3, 5, 6, 8]]
    # a short relaxation and MD (the restraint, not the relaxation, keeps each frame in its cell)
    kw = dict(dihedrals=dihedrals, n=[2, 2], seed=3, k_eV_per_rad2=2.0, opt_steps=10, temperatures=[300.0],
              equilibration_steps=8, interval=4, frames_per_point=1)
    X = dihedral_grid_frames(TBLiteLabeler(), Z, R, **kw)
    targets = grid_targets([2, 2], seed=3)
    assert X.shape == (4, 22, 3)
    for x, t in zip(X, targets):
        assert len(samplers.fragments(Z, x)) == 1  # one molecule, every bond kept
        got = np.array([dihedral(x, idx) for idx in dihedrals])
        # the restraint (~6° thermal spread at 300 K) holds the frame near its target, far inside its 180° cell
        assert np.all(np.abs((got - t + np.pi) % (2 * np.pi) - np.pi) < np.radians(35.0))
    # four cells, four different conformers: the targets span the plane
    assert np.ptp(targets[:, 0]) > np.pi / 2 and np.ptp(targets[:, 1]) > np.pi / 2


def test_xtb_md_sampler_part_is_seeded_and_thermal(tmp_path):
    recipe = {"name": "w", "structure": "water", "labeler": dict(recipes._GFN2),
              "sampler": {"kind": "md", **recipes._XTB_MD, "equilibration_steps": 20, "interval": 10,
                          "temperatures": [300.0, 1000.0], "frames_per_temperature": 4, "seed": 3}}
    a = recipes.sample_configurations(recipe, cache_dir=tmp_path / "a")
    b = recipes.sample_configurations(recipe, cache_dir=tmp_path / "b")
    # same seed: the same frames (to the last bits: tblite's threaded sums may round differently)
    np.testing.assert_allclose(a.R, b.R, rtol=0, atol=1e-10)
    assert a.n_frames == 8
    r_oh = np.linalg.norm(a.R[:, 1:] - a.R[:, :1], axis=-1)
    assert 0.85 < r_oh.min() and r_oh.max() < 1.2  # bonded water ...
    assert r_oh.std() > 1e-3 and len(np.unique(a.R[:, 0, 0])) == 8  # ... that moves: no two frames alike


@pytest.mark.parametrize("name", ORGANIC_SETS)
def test_shipped_organic_set_is_consistent(name):
    ds = load_shipped(name)
    recipe = recipes.get_recipe(f"shipped:{name}")
    assert ds.n_frames >= 20
    assert np.isfinite(ds.E).all() and np.isfinite(ds.F).all()
    assert ds.metadata["units"] == {"energy": "eV", "length": "Angstrom", "force": "eV/Angstrom",
                                    **({"dipole": "e*Angstrom"} if "dipole" in ds.extras else {})}
    assert ds.metadata["recipe"]["sampler"] == recipe["sampler"]  # temperatures, samplers: recorded
    level = ds.metadata["labeler"]
    expected = ("DFT", "PBE", "def2-SVP") if recipe["labeler"].get("method") == "DFT" else ("GFN2-xTB", None, None)
    assert (level["method"], level.get("xc"), level.get("basis")) == expected
    np.testing.assert_array_equal(ds.Z[0], recipe["structure"]["Z"])
    # an isolated molecule feels no net force: the labels are forces of one energy surface
    assert np.abs(ds.F.sum(1)).max() < 1e-3
    assert np.abs(ds.F).max() > 0.05  # ... and the frames are not all at the minimum


@pytest.mark.parametrize("name", ["alanine_dipeptide", "alanine_dipeptide_rama", "ferrocene"])
def test_shipped_xtb_label_is_reproduced_from_its_metadata(name):
    from qdyn.data.labelers import labeler_from_spec

    ds = load_shipped(name)
    res = labeler_from_spec(ds.metadata["labeler"]).label(ds.Z[0], ds.R[0])
    assert res.energy == pytest.approx(ds.E[0], abs=1e-8)
    np.testing.assert_allclose(res.forces, ds.F[0], atol=1e-7)


def test_recipe_level_forces_are_the_derivative_of_its_energy():
    """The ethanol recipe's DFT settings (grid response on) in a minimal basis, one frame:
    a central difference of the energy matches the analytic force (float64)."""
    pytest.importorskip("pyscf")
    from qdyn.data import PySCFLabeler

    spec = {k: v for k, v in recipes.get_recipe("shipped:ethanol")["labeler"].items() if k != "basis"}
    lab = PySCFLabeler(**{**spec, "basis": "sto-3g", "grid_level": 1})
    ds = load_shipped("ethanol_torsions")
    Z, R = ds.Z[1], ds.R[1]
    v = np.random.default_rng(0).normal(size=R.shape)
    v /= np.linalg.norm(v)
    h = 1e-3
    fd = (lab.label(Z, R + h * v).energy - lab.label(Z, R - h * v).energy) / (2 * h)
    assert fd == pytest.approx(-np.sum(lab.label(Z, R).forces * v), abs=2e-4)
