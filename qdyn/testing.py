"""Reusable physics assertions for every qdyn energy model.

Each helper takes ``(model, params, R, system)``, raises ``AssertionError`` with a message
that says what broke and by how much, and returns the measured numbers. Symmetry checks come
with a non-triviality check, because a model whose forces vanish is invariant under
everything (a jax-md test once passed that way).

Run them in float64 (:func:`qdyn.enable_x64`); tolerances assume it.

Example:
    >>> from qdyn import enable_x64; enable_x64()
    >>> import jax, numpy as np
    >>> from qdyn import testing
    >>> from qdyn.models import sivqlm
    >>> from qdyn.system import System
    >>> model = sivqlm.build("H2O", layers=2)
    >>> params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    >>> R = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    >>> _ = testing.assert_e3_invariant(model, params, R, System.create(["O", "H", "H"]))
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .models.base import EnergyModel, energy_and_forces_fn
from .system import System, pad_positions


# Traces of each model's shared E+F function, counted at trace time (for assert_no_retrace).
_TRACES: dict = {}


@functools.lru_cache(maxsize=32)
def _jitted_ef(apply):
    ef = energy_and_forces_fn(apply)

    def counted(params, R, system):
        _TRACES[apply] = _TRACES.get(apply, 0) + 1
        return ef(params, R, system)

    return jax.jit(counted)


def _ef(model: EnergyModel):
    # One compiled E+F function per model, shared by every check (finite differences use its
    # energies): each check compiling the same model again made the suite several times slower.
    return _jitted_ef(model.apply)


def randomize_params(params, key, *, scale: float = 0.5):
    """Add N(0, scale²) noise to every parameter: tests must not rely on the near-identity
    initialisation, where many symmetry errors would be invisible."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [x + scale * jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for x, k in zip(leaves, keys)]
    )


def random_orthogonal(key, *, reflection: bool = True) -> np.ndarray:
    """A Haar-random 3×3 orthogonal matrix; with ``reflection`` its determinant is -1."""
    A = np.asarray(jax.random.normal(key, (3, 3)), dtype=float)
    Q, Rm = np.linalg.qr(A)
    Q = Q * np.sign(np.diag(Rm))
    if (np.linalg.det(Q) < 0) != reflection:
        Q[:, 0] = -Q[:, 0]
    return Q


def assert_nontrivial(model, params, R, system, *, key=None, min_force=1e-4, min_energy_change=1e-6):
    """Forces are not ~0 and the energy changes when atoms move (so invariance means something)."""
    key = jax.random.PRNGKey(7) if key is None else key
    ef = _ef(model)
    R = jnp.asarray(R)
    E, F = ef(params, R, system)
    fmax = float(jnp.max(jnp.abs(jnp.where(system.mask[:, None], F, 0.0))))
    assert fmax > min_force, f"forces are ~0 (max |F| = {fmax:.3g} eV/Å): symmetry tests would be vacuous"
    dR = 0.05 * jax.random.normal(key, R.shape, R.dtype) * system.mask[:, None]
    E2, _ = ef(params, R + dR, system)
    dE = abs(float(E2 - E))
    assert dE > min_energy_change, f"energy does not change when atoms move (ΔE = {dE:.3g} eV)"
    return {"max_force": fmax, "energy_change": dE}


def invariance_errors(model, params, R, system, *, key=None, n_trials: int = 3, reflection: bool = True):
    """Max |ΔE| and max |ΔF| under random O(3) elements (with reflection) plus translation."""
    key = jax.random.PRNGKey(0) if key is None else key
    ef = _ef(model)
    R = jnp.asarray(R)
    E0, F0 = ef(params, R, system)
    dE = dF = 0.0
    for k in jax.random.split(key, n_trials):
        kq, kt = jax.random.split(k)
        Q = jnp.asarray(random_orthogonal(kq, reflection=reflection), R.dtype)
        t = jax.random.normal(kt, (3,), R.dtype) * 3.0
        # a periodic cell rotates with the atoms (columns are lattice vectors)
        sys_rot = system if system.box is None else dataclasses.replace(system, box=Q @ system.box)
        E1, F1 = ef(params, R @ Q.T + t[None, :], sys_rot)
        dE = max(dE, abs(float(E1 - E0)))
        mask = system.mask[:, None]
        dF = max(dF, float(jnp.max(jnp.abs(jnp.where(mask, F1 - F0 @ Q.T, 0.0)))))
    return dE, dF


def assert_e3_invariant(model, params, R, system, *, key=None, n_trials=3, atol=1e-10, reflection=True):
    """E(R Qᵀ + t) = E(R) and F(R Qᵀ + t) = F(R) Qᵀ, Q random orthogonal (det -1 with
    ``reflection``), plus the non-triviality check."""
    info = assert_nontrivial(model, params, R, system)
    dE, dF = invariance_errors(model, params, R, system, key=key, n_trials=n_trials, reflection=reflection)
    what = "rotation+reflection+translation" if reflection else "rotation+translation"
    assert dE <= atol and dF <= atol * 10, f"not invariant under {what}: |ΔE| = {dE:.3g} eV, |ΔF| = {dF:.3g} eV/Å"
    return {**info, "energy_error": dE, "force_error": dF}


def assert_translation_invariant(model, params, R, system, *, atol=1e-10):
    ef = _ef(model)
    R = jnp.asarray(R)
    E0, F0 = ef(params, R, system)
    E1, F1 = ef(params, R + jnp.array([[1.7, -2.3, 0.4]], R.dtype), system)
    dE, dF = abs(float(E1 - E0)), float(jnp.max(jnp.abs(F1 - F0)))
    assert dE <= atol and dF <= 10 * atol, f"not translation invariant: |ΔE| = {dE:.3g}, |ΔF| = {dF:.3g}"
    return {"energy_error": dE, "force_error": dF}


def permutation_errors(model, params, R, system, perm: Sequence[int]):
    perm = np.asarray(perm)
    ef = _ef(model)
    R = jnp.asarray(R)
    if not np.array_equal(np.asarray(system.species)[perm], np.asarray(system.species)):
        raise ValueError(f"permutation {perm.tolist()} exchanges unlike atoms")
    E0, F0 = ef(params, R, system)
    E1, F1 = ef(params, R[perm], system)
    return abs(float(E1 - E0)), float(jnp.max(jnp.abs(F1 - F0[perm])))


def assert_permutation_invariant(model, params, R, system, perm: Sequence[int], *, atol=1e-10):
    """E(R[perm]) = E(R) and F(R[perm]) = F(R)[perm] for an exchange of like atoms."""
    info = assert_nontrivial(model, params, R, system)
    dE, dF = permutation_errors(model, params, R, system, perm)
    assert dE <= atol and dF <= 10 * atol, (
        f"not invariant under permutation {list(perm)}: |ΔE| = {dE:.3g} eV, |ΔF| = {dF:.3g} eV/Å"
    )
    return {**info, "energy_error": dE, "force_error": dF}


def assert_forces_match_fd(model, params, R, system, *, key=None, n_dirs=3, h=1e-4, rtol=1e-6, atol=1e-8):
    """Central finite differences of E along random directions v equal -F·v (float64)."""
    key = jax.random.PRNGKey(3) if key is None else key
    ef = _ef(model)
    R = jnp.asarray(R)
    _, F = ef(params, R, system)
    worst = 0.0
    for k in jax.random.split(key, n_dirs):
        v = jax.random.normal(k, R.shape, R.dtype) * system.mask[:, None]
        v = v / jnp.linalg.norm(v)
        fd = (ef(params, R + h * v, system)[0] - ef(params, R - h * v, system)[0]) / (2 * h)
        an = -jnp.sum(F * v)
        err = abs(float(fd - an))
        worst = max(worst, err)
        assert err <= atol + rtol * abs(float(an)), (
            f"force ≠ -∇E: finite difference {float(fd):.10g} vs -F·v {float(an):.10g} (error {err:.3g})"
        )
    return {"max_error": worst}


def assert_second_order_gradient(model, params, R, system, *, key=None, h=1e-5, rtol=1e-5, atol=1e-8):
    """The gradient of a force loss w.r.t. params matches central differences (training
    differentiates forces, so grad-of-grad must be right)."""
    key = jax.random.PRNGKey(5) if key is None else key
    ef = energy_and_forces_fn(model.apply)
    R = jnp.asarray(R)
    target = 0.1 * jnp.ones_like(R)

    def loss(p):
        _, F = ef(p, R, system)
        return jnp.sum((F - target) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compilation for both
    _, g = value_and_grad(params)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    direction = jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for x, k in zip(leaves, keys)]
    )
    shifted = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * d, params, direction)
    fd = (value_and_grad(shifted(h))[0] - value_and_grad(shifted(-h))[0]) / (2 * h)
    an = sum(jnp.sum(a * b) for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(direction)))
    err = abs(float(fd - an))
    assert err <= atol + rtol * abs(float(an)), (
        f"second-order gradient wrong: finite difference {float(fd):.10g} vs autodiff {float(an):.10g}"
    )
    return {"error": err, "value": float(an)}


def assert_vmap_matches_loop(model, params, Rs, system, *, atol=1e-12):
    """Batched evaluation with vmap equals evaluating frames one by one."""
    ef = energy_and_forces_fn(model.apply)
    Rs = jnp.asarray(Rs)
    Eb, Fb = jax.jit(jax.vmap(ef, in_axes=(None, 0, None)))(params, Rs, system)
    one = _ef(model)
    for i in range(Rs.shape[0]):
        E, F = one(params, Rs[i], system)
        np.testing.assert_allclose(np.asarray(Eb[i]), np.asarray(E), atol=atol, rtol=0)
        np.testing.assert_allclose(np.asarray(Fb[i]), np.asarray(F), atol=atol, rtol=0)
    return {"n_frames": int(Rs.shape[0])}


def assert_no_retrace(model, params, R, system):
    """A second call with new values of the same shapes (positions and params) reuses the
    compiled function: params are arguments, not constants baked into the trace."""
    ef = _ef(model)  # the compiled function every other check shares
    R = jnp.asarray(R)
    jax.block_until_ready(ef(params, R, system))
    traces = _TRACES[model.apply]
    params2 = jax.tree_util.tree_map(lambda x: x * 1.01, params)
    jax.block_until_ready(ef(params2, R + 0.01, system))
    retraces = _TRACES[model.apply] - traces
    assert retraces == 0, f"retraced {retraces} time(s) on a call with identical shapes"
    return {"retraces": retraces}


def assert_padding_invariant(model, params, R, system: System, *, n_pad=2, atol=1e-12):
    """Padding atoms (mask False) change neither the energy nor the real atoms' forces, and
    get zero force."""
    ef = _ef(model)
    R = jnp.asarray(R)
    E0, F0 = ef(params, R, system)
    n = system.n_atoms + n_pad
    E1, F1 = ef(params, pad_positions(R, n), system.pad(n))
    np.testing.assert_allclose(float(E1), float(E0), atol=atol, rtol=0)
    np.testing.assert_allclose(np.asarray(F1[: system.n_atoms]), np.asarray(F0), atol=atol, rtol=0)
    np.testing.assert_allclose(np.asarray(F1[system.n_atoms :]), 0.0, atol=atol)
    return {"energy_error": abs(float(E1 - E0))}


def assert_periodic_image_invariant(model, params, R, system: System, *, key=None, atol=1e-10):
    """Moving atoms by whole lattice vectors changes nothing (periodic systems), and the
    energy does feel the periodic images (a non-triviality check: the same atoms in a much
    larger box give a different energy)."""
    if system.box is None:
        raise ValueError("assert_periodic_image_invariant needs a periodic system (box)")
    key = jax.random.PRNGKey(11) if key is None else key
    ef = _ef(model)
    R = jnp.asarray(R)
    E0, F0 = ef(params, R, system)
    n = jax.random.randint(key, (R.shape[0], 3), -2, 3).astype(R.dtype)
    E1, F1 = ef(params, R + n @ system.box.T, system)
    dE, dF = abs(float(E1 - E0)), float(jnp.max(jnp.abs(F1 - F0)))
    assert dE <= atol and dF <= 10 * atol, f"not invariant under lattice translations: |ΔE| = {dE:.3g}, |ΔF| = {dF:.3g}"
    E_big, _ = ef(params, R, dataclasses.replace(system, box=3.0 * system.box))
    assert abs(float(E_big - E0)) > 1e-6, "energy does not depend on the periodic images (box ignored?)"
    return {"energy_error": dE, "force_error": dF}


def assert_net_force_zero(model, params, R, system, *, atol=1e-10):
    """Isolated systems: forces sum to zero (translation invariance, differentiated)."""
    _, F = _ef(model)(params, jnp.asarray(R), system)
    net = float(jnp.max(jnp.abs(jnp.sum(F, axis=0))))
    assert net <= atol, f"net force {net:.3g} eV/Å on an isolated system"
    return {"net_force": net}


def like_atom_swaps(system: System) -> list[list[int]]:
    """Permutations exchanging two like real atoms: the first two of each element."""
    species = np.asarray(system.species)
    mask = np.asarray(system.mask)
    swaps = []
    for z in sorted(set(species[mask].tolist())):
        idx = np.flatnonzero((species == z) & mask)
        if len(idx) >= 2:
            perm = np.arange(len(species))
            perm[[idx[0], idx[1]]] = perm[[idx[1], idx[0]]]
            swaps.append(perm.tolist())
    return swaps


def _transform_errors(model, params, R, system, Q, t):
    """Max |ΔE| and |ΔF| when every atom moves to ``R Qᵀ + t`` (forces must rotate with Q)."""
    ef = _ef(model)
    E0, F0 = ef(params, R, system)
    E1, F1 = ef(params, R @ Q.T + t[None, :], system)
    dF = float(jnp.max(jnp.abs(jnp.where(system.mask[:, None], F1 - F0 @ Q.T, 0.0))))
    return abs(float(E1 - E0)), dF


def check_circuit(model, params, R, system, *, permutations=None, key=None, atol=1e-10):
    """Which symmetries a model built around a circuit (a user's own, :mod:`qdyn.quantum.user`)
    has: rotation (det +1), reflection (a mirror through a random plane), translation, every
    exchange of like atoms (``permutations``; default :func:`like_atom_swaps`), and forces
    = -∇E against central finite differences (float64).

    Checked at random (non-trivial) parameters and geometry: first that forces are not zero
    and the energy moves with the atoms, else every symmetry would hold vacuously.

    Returns:
        ``{check: {"energy_error", "force_error"} | {...}}`` when everything holds.

    Raises:
        AssertionError: every broken symmetry by name with its errors, e.g.
            ``"circuit of Custom[H2O, ...] breaks permutation [0, 2, 1] (|ΔE| = 3.1e-02 eV, ...)"``.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    R = jnp.asarray(R)
    report = {"nontrivial": assert_nontrivial(model, params, R, system)}
    k_rot, k_mirror, k_t = jax.random.split(key, 3)
    n = jax.random.normal(k_mirror, (3,), R.dtype)
    n = n / jnp.linalg.norm(n)
    zero = jnp.zeros(3, R.dtype)
    transforms = {
        "rotation": (jnp.asarray(random_orthogonal(k_rot, reflection=False), R.dtype), zero),
        "reflection": (jnp.eye(3, dtype=R.dtype) - 2.0 * jnp.outer(n, n), zero),
        "translation": (jnp.eye(3, dtype=R.dtype), 3.0 * jax.random.normal(k_t, (3,), R.dtype)),
    }
    errors = {name: _transform_errors(model, params, R, system, Q, t) for name, (Q, t) in transforms.items()}
    for perm in like_atom_swaps(system) if permutations is None else permutations:
        errors[f"permutation {list(perm)}"] = permutation_errors(model, params, R, system, perm)
    broken = []
    for name, (dE, dF) in errors.items():
        report[name] = {"energy_error": dE, "force_error": dF}
        if dE > atol or dF > 10 * atol:
            broken.append(f"{name} (|ΔE| = {dE:.2e} eV, |ΔF| = {dF:.2e} eV/Å)")
    try:
        report["forces_fd"] = assert_forces_match_fd(model, params, R, system)
    except AssertionError as exc:
        broken.append(f"forces = -∇E ({exc})")
    if broken:
        raise AssertionError(f"circuit of {model.name} breaks " + "; ".join(broken))
    return report


def check_model(model, params, R, system, *, permutations=(), reflection=True, atol=1e-10):
    """Run every assertion above on one configuration; returns a report dict."""
    report = {
        "e3": assert_e3_invariant(model, params, R, system, reflection=reflection, atol=atol),
        "translation": assert_translation_invariant(model, params, R, system, atol=atol),
        "forces_fd": assert_forces_match_fd(model, params, R, system),
        "second_order": assert_second_order_gradient(model, params, R, system),
        "net_force": assert_net_force_zero(model, params, R, system, atol=10 * atol),
        "padding": assert_padding_invariant(model, params, R, system),
        "no_retrace": assert_no_retrace(model, params, R, system),
    }
    for perm in permutations:
        report[f"perm{tuple(perm)}"] = assert_permutation_invariant(model, params, R, system, perm, atol=atol)
    return report
