"""qdyn.analysis and ``qdyn analyze``: MSD/diffusion, water hydrogen bonds, PCA/TICA,
and trajectories that MDAnalysis reads. Host NumPy only (no compilation): fast."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.analysis import (diffusion_coefficient, hydrogen_bonds, load_trajectory, mean_squared_displacement,
                           unwrap, water_molecules)
from qdyn.analysis.hbonds import lifetime_correlations
from qdyn.analysis.reduction import pca, trajectory_features
from qdyn.cli.app import app
from qdyn.md.trajectory import H5MDWriter
from qdyn.structures import water, water_dimer


def _random_walk(n_frames=2000, n_atoms=100, sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(scale=sigma, size=(n_frames, n_atoms, 3)), axis=0)


def test_msd_of_a_random_walk_gives_its_diffusion_constant():
    sigma, dt = 0.1, 2.0  # Å per frame per dimension, fs per frame
    X = _random_walk(sigma=sigma)
    D_exact = sigma**2 / (2 * dt)  # Å²/fs
    msd = mean_squared_displacement(X, max_lag=50)
    # the FFT MSD equals the direct average over all time origins
    direct = [np.mean(np.sum((X[m:] - X[: len(X) - m]) ** 2, axis=-1)) for m in (0, 1, 7, 49)]
    np.testing.assert_allclose(msd[[0, 1, 7, 49]], direct, rtol=1e-10, atol=1e-12)
    res = diffusion_coefficient(X, dt, fit_start_fs=10.0, fit_end_fs=80.0, n_blocks=4)
    assert abs(res["D_A2_per_fs"] - D_exact) < 4 * res["D_err_A2_per_fs"] + 0.03 * D_exact
    assert 0 < res["D_err_A2_per_fs"] < 0.1 * D_exact
    np.testing.assert_allclose(res["D_cm2_per_s"], 0.1 * res["D_A2_per_fs"], rtol=1e-12)


def test_unwrap_undoes_periodic_wrapping_in_a_triclinic_cell():
    X = _random_walk(n_frames=300, n_atoms=20, sigma=0.3)
    box = np.array([[5.0, 1.0, 0.0], [0.0, 4.0, 0.5], [0.0, 0.0, 6.0]])  # columns = lattice vectors
    frac = X @ np.linalg.inv(box).T
    wrapped = (frac - np.floor(frac)) @ box.T
    assert np.abs(wrapped - X).max() > 10  # the walk left the cell: wrapping mattered
    np.testing.assert_allclose(unwrap(wrapped, box), X - X[0] + wrapped[0], atol=1e-9)


def test_fit_range_beyond_a_block_is_refused():
    from qdyn.validation import QdynInputError

    with pytest.raises(QdynInputError, match="fit range ends"):
        diffusion_coefficient(_random_walk(n_frames=100, n_atoms=2), 1.0, fit_start_fs=1, fit_end_fs=40, n_blocks=4)


def test_hbond_of_the_water_dimer_and_its_angle_criterion():
    R, system = water_dimer()
    mol = water_molecules(R, system.species)
    np.testing.assert_array_equal(mol, [[0, 1, 2], [3, 4, 5]])
    res = hydrogen_bonds(R[None], system.species, dt_frame_fs=1.0)
    # one bond, donated by molecule 0 (through atom 2) and accepted by molecule 1
    assert res["count_per_frame"] == [1]
    assert res["donated_mean"] == 0.5 and res["accepted_mean"] == 0.5 and res["per_molecule_mean"] == 1.0
    # rotate the donor by 60° about its O, in the plane: the bond angle leaves the 30° cone
    c, s = np.cos(np.radians(60)), np.sin(np.radians(60))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    bent = R.copy()
    bent[:3] = (R[:3] - R[0]) @ rot.T + R[0]
    assert hydrogen_bonds(bent[None], system.species, dt_frame_fs=1.0)["count_per_frame"] == [0]
    # pull the acceptor beyond 3.5 Å along O–O: no bond either
    far = R.copy()
    far[3:] += 0.7 * (R[3] - R[0]) / np.linalg.norm(R[3] - R[0])
    assert hydrogen_bonds(far[None], system.species, dt_frame_fs=1.0)["count_per_frame"] == [0]


def test_hbond_lifetimes_of_a_known_bond_history():
    h = np.zeros((40, 1))
    h[0:10] = 1  # one bond for 10 frames, broken for 5, back for 10
    h[15:25] = 1
    inter, cont = lifetime_correlations(h, max_lag=20)
    assert inter[0] == 1 and cont[0] == 1
    # continuous survival: of the 20 bonded origins, 2*(10 - τ) stay bonded throughout
    np.testing.assert_allclose(cont[:10], [2 * (10 - t) / 20 for t in range(10)])
    assert cont[12] == 0 and inter[15] > 0  # the bond re-forms: intermittent C comes back


def _stretching_water(n_frames=400, seed=0):
    """Water whose symmetric stretch oscillates (0.1 Å) under small isotropic noise, rigidly
    rotated and translated frame by frame."""
    rng = np.random.default_rng(seed)
    R0, _ = water()
    t = np.arange(n_frames)
    frames = []
    for k in range(n_frames):
        R = R0.copy()
        for h in (1, 2):
            u = (R0[h] - R0[0]) / np.linalg.norm(R0[h] - R0[0])
            R[h] = R0[h] + 0.1 * np.sin(2 * np.pi * t[k] / 37.0) * u
        R += rng.normal(scale=0.003, size=R.shape)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        frames.append(R @ q.T + rng.normal(size=3))
    return np.stack(frames)


def test_pca_finds_the_one_dominant_motion():
    from qdyn.analysis.trajectory import Trajectory

    X = _stretching_water()
    traj = Trajectory(np.arange(len(X)) * 1.0, X, np.array([8, 1, 1]), None)
    for kind in ("distances", "positions"):
        res = pca(trajectory_features(traj, kind), n_components=2)
        assert res["explained_variance_ratio"][0] > 0.95, kind
    # in distance space the mode is the symmetric stretch: d(OH1, OH2, HH) ∝ (1, 1, 2 sin(θ/2))
    c = pca(trajectory_features(traj, "distances"), n_components=1)["components"][0]  # [OH1, OH2, HH] order
    mode = np.array([1.0, 1.0, 2 * np.sin(np.radians(104.52 / 2))])
    assert abs(c @ mode) / np.linalg.norm(mode) > 0.99
    # the projection follows the imposed oscillation
    proj = pca(trajectory_features(traj, "distances"), n_components=1)["projection"][:, 0]
    assert abs(np.corrcoef(proj, np.sin(2 * np.pi * np.arange(len(X)) / 37.0))[0, 1]) > 0.99


@pytest.fixture(scope="module")
def water_box_h5md(tmp_path_factory):
    """An H5MD file of 8 waters in a periodic box written by qdyn's writer (no MD needed):
    rigid molecules drifting, so H-bond, MSD and reduction commands all have work."""
    from qdyn.structures import water_box

    R, Z, side = water_box(2, spacing=3.1)
    rng = np.random.default_rng(1)
    F = 60
    drift = np.cumsum(rng.normal(scale=0.05, size=(F, 8, 1, 3)), axis=0)
    X = (R.reshape(8, 3, 3)[None] + drift).reshape(F, 24, 3)
    X = X - side * np.floor(X / side)  # wrapped, as qdyn md writes them
    path = tmp_path_factory.mktemp("h5") / "trajectory.h5"
    w = H5MDWriter(path, Z, side, replicas=[0])
    V = rng.normal(scale=0.01, size=(F, 1, 24, 3))
    w.append(step=np.arange(F) * 10, time_fs=np.arange(F) * 5.0, R=X[:, None], V=V, potential=np.zeros((F, 1)),
             kinetic=np.zeros((F, 1)), temperature=np.zeros((F, 1)))
    w.close()
    return path, X, V[:, 0], side


def test_mdanalysis_reads_qdyn_h5md(water_box_h5md):
    mda = pytest.importorskip("MDAnalysis")
    path, X, V, side = water_box_h5md
    traj = load_trajectory(path)
    np.testing.assert_allclose(traj.positions, X, atol=1e-12)
    np.testing.assert_allclose(traj.box, np.diag(side))
    u = mda.Universe.empty(24, trajectory=False)
    u.load_new(str(path), format="H5MD")  # the file as written by qdyn md, read by MDAnalysis itself
    assert len(u.trajectory) == len(X)
    u.trajectory[7]
    np.testing.assert_allclose(u.atoms.positions, X[7], atol=1e-4)
    np.testing.assert_allclose(u.atoms.velocities, V[7] * 1e3, rtol=1e-5, atol=1e-6)  # MDAnalysis: Å/ps
    np.testing.assert_allclose(u.dimensions, [*side, 90, 90, 90], atol=1e-5)
    np.testing.assert_allclose(u.trajectory.ts.time, 7 * 5.0 / 1e3)  # ps
    from qdyn.analysis.trajectory import to_mdanalysis

    v = to_mdanalysis(traj)
    v.trajectory[7]
    np.testing.assert_allclose(v.atoms.positions, X[7], atol=1e-4)
    assert list(v.atoms.names[:3]) == ["O", "H", "H"]


def test_analyze_cli_writes_json_and_plots(water_box_h5md, tmp_path):
    path, X, _, _ = water_box_h5md
    runner = CliRunner()
    out = tmp_path / "an"
    r = runner.invoke(app, ["analyze", "msd", str(path), "--species", "O", "--blocks", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    msd = json.loads((out / "msd.json").read_text())
    assert msd["n_atoms"] == 8 and msd["D_A2_per_fs"] > 0 and (out / "msd.png").exists()
    r = runner.invoke(app, ["analyze", "hbonds", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    hb = json.loads((out / "hbonds.json").read_text())
    assert hb["n_molecules"] == 8 and len(hb["count_per_frame"]) == len(X) and (out / "hbonds.png").exists()
    r = runner.invoke(app, ["analyze", "reduce", str(path), "--atoms", "0,3,6,9", "--clusters", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    red = json.loads((out / "reduce.json").read_text())
    assert red["n_features"] == 6 and abs(sum(red["cluster_populations"]) - 1) < 1e-12
    # user mistakes: one line, exit 2
    for args in (["msd", str(tmp_path / "missing.h5")], ["reduce", str(path), "--method", "umap"],
                 ["reduce", str(path), "--features", "positions"], ["msd", str(path), "--replica", "3"]):
        r = runner.invoke(app, ["analyze", *args])
        assert r.exit_code == 2 and r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1, \
            (args, r.output)
