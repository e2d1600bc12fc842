"""Nonadiabatic couplings in labelled data: SA-CASSCF NACs through the labelling run, and
their signs made continuous along the data."""

from __future__ import annotations

import numpy as np
import pytest

from qdyn.data import Dataset
from qdyn.data.couplings import align_coupling_signs, kabsch_rotation
from qdyn.validation import QdynInputError


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_signs_become_continuous_in_any_orientation():
    """A smooth coupling field on a bend scan, each frame rotated at random and given a random
    sign: alignment restores one sign for all (relative to the root) and records the flips."""
    n = 12
    angles = np.radians(np.linspace(60.0, 120.0, n))
    R0 = np.zeros((n, 3, 3))
    R0[:, 1] = np.stack([2.0 * np.cos(angles / 2), 2.0 * np.sin(angles / 2), 0 * angles], -1)
    R0[:, 2] = R0[:, 1] * np.array([1.0, -1.0, 1.0])
    d0 = np.zeros((n, 2, 2, 3, 3))
    d0[:, 0, 1, 1] = np.stack([np.ones(n), 0.3 + angles, np.zeros(n)], -1)  # smooth, changes with angle
    d0[:, 0, 1, 2] = -d0[:, 0, 1, 1] * np.array([1.0, -1.0, 1.0])
    d0[:, 1, 0] = -d0[:, 0, 1]
    flips = np.where(np.random.default_rng(0).random(n) < 0.5, -1.0, 1.0)
    flips[0] = 1.0
    R, d = np.empty_like(R0), np.empty_like(d0)
    for i in range(n):
        Q = _rotation(i)
        R[i] = R0[i] @ Q.T + i  # rotated and translated
        d[i] = flips[i] * d0[i] @ Q.T
    assert (flips < 0).sum() >= 3  # non-trivial
    aligned, signs, edges = align_coupling_signs(R, d)
    np.testing.assert_array_equal(signs[:, 0, 1], flips)
    np.testing.assert_array_equal(signs[:, 1, 0], flips)
    np.testing.assert_allclose(aligned[:, 1, 0], -aligned[:, 0, 1])
    assert len(edges) == n - 1
    # a failed frame (NaN) is left alone and does not break the tree
    d[4] = np.nan
    aligned, signs, _ = align_coupling_signs(R, d)
    assert np.isnan(aligned[4]).all() and signs[4, 0, 1] == 1.0
    np.testing.assert_array_equal(np.delete(signs[:, 0, 1], 4), np.delete(flips, 4))


def test_kabsch_rotation_is_proper_and_exact():
    P = np.random.default_rng(1).normal(size=(4, 3))
    Q = _rotation(3)
    rot = kabsch_rotation(P, P @ Q.T + 2.0)
    np.testing.assert_allclose(rot, Q.T, atol=1e-12)
    assert np.linalg.det(rot) > 0


@pytest.mark.usefixtures("pyscf_one_thread")
def test_sa_casscf_couplings_through_the_labelling_run(tmp_path):
    """LiH SA2-CASSCF(2,2): singlet states, d_01 antisymmetric, along the bond (Σ states couple
    only through the bond length), and cached and assembled into extras['nacs_states']."""
    from qdyn.data.label_run import label_dataset
    from qdyn.data.labelers import PySCFLabeler

    lab = PySCFLabeler(method="SA-CASSCF", basis="sto-3g", ncas=2, nelecas=2, n_states=2, nac=True)
    R = np.array([[[0.0, 0.0, 0.0], [0.0, 0.0, 1.6]], [[0.0, 0.0, 0.0], [0.0, 0.0, 2.4]]])
    configs = Dataset(R=R, Z=np.broadcast_to([3, 1], (2, 2)))
    ds = label_dataset(configs, lab, workers=0, cache_dir=tmp_path)
    d = ds.extras["nacs_states"]  # [2, 2, 2, 2, 3] 1/Å
    assert d.shape == (2, 2, 2, 2, 3) and ds.metadata["labeler"]["spin_states"].startswith("singlets")
    np.testing.assert_allclose(d[:, 1, 0], -d[:, 0, 1], atol=0)
    np.testing.assert_allclose(d[:, :, :, :, :2], 0.0, atol=1e-8)
    assert np.all(np.abs(d[:, 0, 1, :, 2]).max(axis=1) > 1e-2)
    again = label_dataset(configs, lab, workers=0, cache_dir=tmp_path)  # from the cache, bit for bit
    np.testing.assert_array_equal(again.extras["nacs_states"], d)
    with pytest.raises(QdynInputError, match="nac=True needs method SA-CASSCF"):
        PySCFLabeler(method="HF", basis="sto-3g", nac=True)


def test_shipped_casscf_data_has_a_conical_intersection_with_odd_couplings():
    """On the C2v line the S0/S1 gap closes and reopens linearly (a crossing, not an avoided
    one), the S0/S1 coupling there is a pure B2 vector (odd under H1 <-> H2), it grows towards
    the intersection, and the recorded finite-difference check of the forces holds."""
    from qdyn.data import load_shipped

    ds = load_shipped("CaH2_casscf")
    u = ds.R[:, 1:] - ds.R[:, :1]
    r = np.linalg.norm(u, axis=-1)
    angle = np.degrees(np.arccos(np.sum(u[:, 0] * u[:, 1], -1) / (r[:, 0] * r[:, 1])))
    # the bend scan through the apex: C2v, r1 = r2 = 2.05 Å (the set also has the C2v plane at other
    # bond lengths and the Franck-Condon region up to 170°)
    c2v = np.flatnonzero(np.isclose(r[:, 0], r[:, 1]) & np.isclose(r[:, 0], 2.05) & (angle < 62))
    order = c2v[np.argsort(angle[c2v])]
    gap = ds.E_states[order, 1] - ds.E_states[order, 0]
    x = angle[order]
    k = int(np.argmin(gap))
    assert 4 <= k <= len(order) - 4 and gap[k] < 0.1
    # straight lines through three points on each side, away from the two nearest the minimum
    left = np.polyfit(x[k - 4:k - 1], gap[k - 4:k - 1], 1)
    right = np.polyfit(x[k + 1:k + 4], gap[k + 1:k + 4], 1)
    assert left[0] < -0.03 and right[0] > 0.03  # eV/degree: a V, closing and reopening
    zero_left, zero_right = -left[1] / left[0], -right[1] / right[0]
    assert abs(zero_left - zero_right) < 0.5, (zero_left, zero_right)  # both sides point at one crossing
    # the two points nearest it lie on the V too: no rounding off of an avoided crossing
    v = np.maximum(np.polyval(left, x[k - 1:k + 1]), np.polyval(right, x[k - 1:k + 1]))
    np.testing.assert_allclose(gap[k - 1:k + 1], v, atol=0.015)
    # pure B2 on the scan through the apex (metadata["c2v_check"] takes all C2v frames: towards
    # linear, 170°, S1's B2 label is no longer clean; docs/multistate.md)
    for i in order:
        R, nac = ds.R[i], ds.extras["nacs_states"][i, 0, 1]
        n = (R[1] - R[2]) / np.linalg.norm(R[1] - R[2])
        image = nac[[0, 2, 1]] @ (np.eye(3) - 2 * np.outer(n, n))  # the coupling after the H1 <-> H2 mirror
        assert np.linalg.norm(nac + image) / (2 * np.linalg.norm(nac)) < 1e-2
    d01 = np.linalg.norm(ds.extras["nacs_states"][order, 0, 1].reshape(len(order), -1), axis=1)
    assert d01[k] > 3 * d01[0] and d01[k] > 3 * d01[-1]
    assert ds.metadata["fd_check"]["max_abs_error_eV_per_A"] < 1e-3
