"""A true conical intersection in the diabatic model: a coupling odd under H1 <-> H2.

On a CaH2-like model whose 0-1 coupling is odd under the exchange of the hydrogens
(``odd_couplings={"0-1": ["H"]}``), with the diabats made to cross on the C2v plane:
the geometric phase (the adiabatic ground state changes sign around a loop enclosing the
intersection, not around one that does not), the branching plane (gap linear in the
displacement, slopes from g and h, g ⟂ h), forces and nonadiabatic couplings against float64
central finite differences, the symmetry of W, and the ground-state physics battery.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.md.adapters import diabatic_fn
from qdyn.models import build_model, multistate
from qdyn.namd.electronic import align_phases, eigh_symmetric, electronic_structure
from qdyn.system import System
from qdyn.validation import QdynInputError

SMALL = dict(hidden=(8,), cutoff=5.0, n_radial=4, zetas=(1.0,))
SYSTEM = System.create(["Ca", "H", "H"])
R_CI, ANGLE_CI = 2.05, 90.0  # where the fixture puts the crossing of the diabats (Å, degrees)


def cah2(r1, r2, angle_deg):
    """CaH2 [3, 3] Å, Ca at the origin, H–Ca–H angle in degrees (in the xz plane, C2 axis z)."""
    a = np.radians(angle_deg) / 2
    return np.array([[0.0, 0.0, 0.0], [r1 * np.sin(a), 0.0, r1 * np.cos(a)], [-r2 * np.sin(a), 0.0, r2 * np.cos(a)]])


def branching_coordinates(angle_deg, delta):
    """The (bend, antisymmetric stretch) plane through the intersection: r1,2 = R_CI ± delta Å."""
    return cah2(R_CI + delta, R_CI - delta, angle_deg)


@pytest.fixture(scope="module")
def odd():
    """A random odd-coupling model whose diabats cross at (R_CI, R_CI, ANGLE_CI)."""
    model = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", odd_couplings={"0-1": ["H"]}, **SMALL)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    W_fn = jax.jit(diabatic_fn(model, SYSTEM))
    W = W_fn(params, jnp.asarray(cah2(R_CI, R_CI, ANGLE_CI)))
    # shift diabat 1 so that W00 = W11 at the chosen C2v geometry: the diabats cross there
    params = {**params, "state_offset": params["state_offset"].at[1].add(W[0, 0] - W[1, 1])}
    W_batch = jax.jit(jax.vmap(diabatic_fn(model, SYSTEM), in_axes=(None, 0)))
    return model, params, W_fn, W_batch


def test_alternating_feature_is_the_sign_representation():
    """Odd under every exchange of two like atoms of the chosen element, blind to the rest."""
    h = jnp.array([0.3, -0.2, 0.9, 0.4, 1.7, 0.1])
    Z = jnp.array([8, 1, 1, 6, 1, 6])
    mask = jnp.array([True, True, True, True, True, False])
    f = lambda h, Z, m: float(multistate.alternating_feature(h, Z, m, (1,)))
    a0 = f(h, Z, mask)
    assert abs(a0) > 1e-3
    for i, j in ((1, 2), (1, 4), (2, 4)):  # the three hydrogens
        perm = np.arange(6)
        perm[[i, j]] = perm[[j, i]]
        np.testing.assert_allclose(f(h[perm], Z[perm], mask[perm]), -a0, rtol=1e-14)
    perm = np.array([3, 1, 2, 0, 4, 5])  # O <-> C: not listed, no sign
    np.testing.assert_allclose(f(h[perm], Z[perm], mask[perm]), a0, rtol=1e-14)
    # a padding atom changes nothing; equal h on two like atoms is a zero
    np.testing.assert_allclose(f(h.at[5].set(9.0), Z, mask), a0, rtol=1e-14)
    assert f(h.at[4].set(h[1]), Z, mask) == 0.0


def test_odd_coupling_symmetry_and_ground_state_battery(odd):
    model, params, W_fn, _ = odd
    R = jnp.asarray(cah2(2.1, 1.95, 110.0) + np.array([[0.0, 0.05, 0.0], [0.0, 0.0, 0.0], [0.0, -0.1, 0.0]]))
    W0 = W_fn(params, R)
    assert abs(float(W0[0, 1])) > 1e-3  # non-trivial: off the C2v plane the coupling is not zero
    Wp = W_fn(params, R[jnp.array([0, 2, 1])])
    np.testing.assert_allclose(jnp.diag(Wp), jnp.diag(W0), atol=1e-12)
    np.testing.assert_allclose(Wp[0, 1], -W0[0, 1], atol=1e-12)  # odd under H1 <-> H2
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(Wp)), np.linalg.eigvalsh(np.asarray(W0)), atol=1e-12)
    Q = jnp.asarray(testing.random_orthogonal(jax.random.PRNGKey(7), reflection=True))
    np.testing.assert_allclose(W_fn(params, R @ Q.T + 1.5), W0, atol=1e-11)  # even under O(3) and translation
    # on the C2v plane the coupling vanishes identically, away from it it grows
    np.testing.assert_allclose(W_fn(params, jnp.asarray(cah2(2.2, 2.2, 95.0)))[0, 1], 0.0, atol=1e-14)
    # the ground state is an ordinary invariant model: the shared battery (second-order
    # gradients are covered for multistate models by tests/test_model_families.py)
    testing.assert_e3_invariant(model, params, R, SYSTEM)
    testing.assert_translation_invariant(model, params, R, SYSTEM)
    testing.assert_permutation_invariant(model, params, R, SYSTEM, [0, 2, 1])
    testing.assert_forces_match_fd(model, params, R, SYSTEM)
    testing.assert_net_force_zero(model, params, R, SYSTEM)
    testing.assert_padding_invariant(model, params, R, SYSTEM)
    testing.assert_no_retrace(model, params, R, SYSTEM)


def _track_ground_state(W_batch, params, loop):
    """The adiabatic ground-state eigenvector [2], its sign continued along a closed loop
    [N, 3, 3]; returns its overlap with the start after going once around, and the smallest gap."""
    Ws = np.asarray(W_batch(params, jnp.asarray(loop)))
    _, U = eigh_symmetric(jnp.asarray(Ws[0]))
    U0 = U
    gaps = []
    for W in Ws[1:]:
        E, Un = eigh_symmetric(jnp.asarray(W))
        U = align_phases(Un, U)
        gaps.append(float(E[1] - E[0]))
    return float(jnp.dot(U0[:, 0], U[:, 0])), min(gaps)


def _loop(center_deg, n=96, d_angle=3.0, d_stretch=0.03):
    phi = np.linspace(0.0, 2 * np.pi, n + 1)  # closed: the last point is the first
    return np.stack([branching_coordinates(center_deg + d_angle * np.cos(p), d_stretch * np.sin(p)) for p in phi])


def test_geometric_phase_around_the_intersection(odd):
    model, params, W_fn, W_batch = odd
    W = W_fn(params, jnp.asarray(branching_coordinates(ANGLE_CI, 0.0)))
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(W)), [W[0, 0]] * 2, atol=1e-10)  # degenerate
    around, gap_around = _track_ground_state(W_batch, params, _loop(ANGLE_CI))
    # the same loop moved 9° up the bend: the diabats do not cross inside it
    angles = np.linspace(ANGLE_CI + 5.5, ANGLE_CI + 12.5, 8)
    d = [float(W_fn(params, jnp.asarray(branching_coordinates(a, 0.0)))[0, 0]
               - W_fn(params, jnp.asarray(branching_coordinates(a, 0.0)))[1, 1]) for a in angles]
    assert np.all(np.sign(d) == np.sign(d[0])), d
    beside, gap_beside = _track_ground_state(W_batch, params, _loop(ANGLE_CI + 9.0))
    assert gap_around > 1e-4 and gap_beside > 1e-4  # the loops stay off the seam
    np.testing.assert_allclose(around, -1.0, atol=1e-6)  # sign change: geometric (Berry) phase π
    np.testing.assert_allclose(beside, 1.0, atol=1e-6)


def test_branching_plane_and_linear_gap(odd):
    model, params, W_fn, _ = odd
    R0 = jnp.asarray(branching_coordinates(ANGLE_CI, 0.0))
    dW = jax.jacfwd(W_fn, argnums=1)(params, R0)  # [2, 2, 3, 3]
    g = 0.5 * (dW[0, 0] - dW[1, 1]).ravel()  # gradient difference: tuning, totally symmetric
    h = dW[0, 1].ravel()  # derivative coupling direction: antisymmetric stretch
    assert float(jnp.linalg.norm(g)) > 1e-3 and float(jnp.linalg.norm(h)) > 1e-3
    assert abs(float(g @ h)) < 1e-10 * float(jnp.linalg.norm(g) * jnp.linalg.norm(h))
    key = jax.random.PRNGKey(11)
    for alpha in (0.0, 0.7, np.pi / 2, 2.3):
        v = np.cos(alpha) * g / jnp.linalg.norm(g) + np.sin(alpha) * h / jnp.linalg.norm(h)
        slope = 2.0 * jnp.sqrt((g @ v) ** 2 + (h @ v) ** 2)
        for t in (1e-3, 1e-4):
            E = np.linalg.eigvalsh(np.asarray(W_fn(params, R0 + t * v.reshape(3, 3))))
            np.testing.assert_allclose((E[1] - E[0]) / t, slope, rtol=20 * t)  # linear, the cone's slope
    # along a direction orthogonal to both (within the internal coordinates) the gap is second order
    s = jax.random.normal(key, (9,))
    s = s - (s @ g) * g / (g @ g) - (s @ h) * h / (h @ h)
    s = s / jnp.linalg.norm(s)
    gap = [float(np.diff(np.linalg.eigvalsh(np.asarray(W_fn(params, R0 + t * s.reshape(3, 3)))))[0]) for t in (1e-3, 2e-3)]
    assert gap[0] < 1e-4 * float(jnp.linalg.norm(g)) and gap[1] > 2.5 * gap[0], gap


def test_forces_and_nonadiabatic_couplings_match_finite_differences(odd):
    model, params, W_fn, _ = odd
    R = jnp.asarray(branching_coordinates(ANGLE_CI + 2.0, 0.02))
    # ε ≪ gap: the regularised inverse gap (default 1e-4 eV) would change d by (ε/ΔE)² ~ 1e-5 here
    el = jax.jit(lambda R, U_ref: electronic_structure(W_fn, params, R, U_ref=U_ref, gap_regularization=1e-9))
    ref = el(R, None)
    assert float(ref.energy[1] - ref.energy[0]) > 1e-3 and float(jnp.max(jnp.abs(ref.nac[0, 1]))) > 1e-2
    ef = jax.jit(multistate.adiabatic_energies_and_forces_fn(model))
    E_model, F_model = ef(params, R, SYSTEM)
    np.testing.assert_allclose(F_model, -ref.grad, atol=1e-10)  # model path and NAMD path agree
    h = 1e-5
    for k in range(2):
        v = jnp.asarray(np.random.default_rng(k).normal(size=(3, 3)))
        v = v / jnp.linalg.norm(v)
        plus, minus = el(R + h * v, ref.U), el(R - h * v, ref.U)
        fd_E = (plus.energy - minus.energy) / (2 * h)
        np.testing.assert_allclose(fd_E, jnp.einsum("iax,ax->i", ref.grad, v), rtol=1e-6, atol=1e-8)
        # d_01 · v = <0| d/dv |1>, the eigenvectors sign-aligned with those at R
        fd_nac = jnp.dot(ref.U[:, 0], (plus.U[:, 1] - minus.U[:, 1]) / (2 * h))
        np.testing.assert_allclose(fd_nac, jnp.sum(ref.nac[0, 1] * v), rtol=1e-6, atol=1e-8)


def test_odd_couplings_config_round_trip_and_errors(odd):
    model, params, W_fn, _ = odd
    assert model.config["odd_couplings"] == {"0-1": [1]}
    again = build_model(model.config)
    R = jnp.asarray(cah2(2.0, 2.3, 100.0))
    np.testing.assert_allclose(again.diabatic(params, R, SYSTEM), W_fn(params, R), atol=1e-13)
    for bad, words in (({"0-2": ["H"]}, "n_states = 2"), ({"0-1": ["O"]}, "not among the modelled species"),
                       ({"1-1": ["H"]}, "two different state indices"), ({"0-1": []}, "name the elements")):
        with pytest.raises(QdynInputError, match=words):
            multistate.build(species=(1, 20), n_states=2, odd_couplings=bad, **SMALL)
