"""Radial bases (C² at r_c), spherical harmonics, power-spectrum invariants, neighbour lists."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.descriptors import make_descriptor
from qdyn.descriptors.neighbors import neighbor_list_fn
from qdyn.descriptors.power_spectrum import power_spectrum
from qdyn.descriptors.radial import radial_basis
from qdyn.descriptors.spherical import real_spherical_harmonics
from qdyn.structures import water_box
from qdyn.system import System, pad_positions
from qdyn.validation import QdynInputError


@pytest.mark.parametrize("kind", ["bessel", "gaussian"])
def test_radial_basis_is_c2_at_the_cutoff(kind):
    rc = 4.0
    rb = radial_basis(kind, n=5, cutoff=rc)
    f = lambda r: rb.fn(r)  # noqa: E731
    d1 = jax.jacfwd(f)
    d2 = jax.jit(jax.jacfwd(d1))
    d1 = jax.jit(d1)
    vals = []
    for eps in (1e-2, 1e-3):
        r = jnp.asarray(rc - eps)
        vals.append([np.max(np.abs(g(r))) for g in (f, d1, d2)])
    vals = np.array(vals)
    # value ~ ε³, first derivative ~ ε², second ~ ε (or faster: the Bessel shapes vanish at r_c
    # themselves): each shrinks at least 10³, 10², 10× per decade of ε
    ratio = vals[1] / vals[0]
    assert np.all(ratio <= 1.1 * np.array([1e-3, 1e-2, 1e-1])), ratio
    # and exactly zero beyond the cutoff, with zero derivatives
    for g in (f, d1, d2):
        np.testing.assert_allclose(g(jnp.asarray(rc)), 0.0, atol=0)
        np.testing.assert_allclose(g(jnp.asarray(rc + 0.3)), 0.0, atol=0)
    # non-trivial inside
    assert np.min(np.max(np.abs(f(jnp.linspace(0.5, 3.0, 20))), axis=0)) > 1e-2


@pytest.mark.parametrize("n", [1, 6, 24])
def test_bessel_basis_equals_its_closed_form_to_second_order(n):
    """The Bessel basis takes its K sines from one sine and one cosine per distance (Chebyshev
    recurrence, derivative through the stored pair): values, first and second derivatives
    equal sqrt(2/r_c) sin(kπr/r_c)/r · f_c(r) differentiated by JAX."""
    from qdyn.geometry import cutoff_fn

    rc = 4.5
    k = jnp.arange(1, n + 1) * np.pi / rc
    closed = lambda r: np.sqrt(2.0 / rc) * jnp.sin(k * r) / r * cutoff_fn(r, rc)  # noqa: E731
    fn = radial_basis("bessel", n=n, cutoff=rc).fn
    r = jnp.linspace(0.3, rc + 0.2, 41)
    scale = float(jnp.max(jnp.abs(jax.vmap(closed)(r))))
    assert scale > 0.1  # non-trivial
    for order in range(3):  # jitted: one compile per function instead of one per eager operation
        got, want = jax.jit(jax.vmap(fn))(r), jax.jit(jax.vmap(closed))(r)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale * 10**order)
        fn, closed = jax.jacfwd(fn), jax.jacrev(closed)
    # reverse over reverse (training differentiates forces): d²/dr² of a weighted sum
    w = jnp.linspace(-1.0, 1.0, n)
    d2 = lambda f: jax.jit(jax.vmap(jax.grad(jax.grad(lambda x: jnp.sum(w * f(x))))))(r)  # noqa: E731
    np.testing.assert_allclose(d2(radial_basis("bessel", n=n, cutoff=rc).fn),
                               d2(lambda x: np.sqrt(2.0 / rc) * jnp.sin(k * x) / x * cutoff_fn(x, rc)),
                               rtol=0, atol=1e-10 * scale)


def test_spherical_harmonics_obey_the_addition_theorem():
    from numpy.polynomial import legendre

    rng = np.random.default_rng(0)
    u, v = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in rng.normal(size=(2, 20, 3)))
    Yu, Yv = (np.asarray(real_spherical_harmonics(jnp.asarray(x), 3)) for x in (u, v))
    cos = np.sum(u * v, axis=1)
    for l in range(4):
        s = slice(l * l, (l + 1) ** 2)
        expected = (2 * l + 1) / (4 * np.pi) * legendre.legval(cos, [0] * l + [1])
        np.testing.assert_allclose(np.sum(Yu[:, s] * Yv[:, s], axis=1), expected, atol=1e-13)
    # orthonormal on the sphere: Monte Carlo Gram matrix ≈ identity / 4π · 4π
    w = rng.normal(size=(200000, 3))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    Y = np.asarray(real_spherical_harmonics(jnp.asarray(w), 3))
    np.testing.assert_allclose(4 * np.pi * Y.T @ Y / len(w), np.eye(16), atol=0.03)


def test_spherical_harmonics_match_e3nn_per_degree():
    e3nn = pytest.importorskip("e3nn_jax")
    rng = np.random.default_rng(1)
    u = rng.normal(size=(10, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    ours = np.asarray(real_spherical_harmonics(jnp.asarray(u), 3))
    theirs = np.asarray(e3nn.spherical_harmonics("0e + 1o + 2e + 3o", jnp.asarray(u), normalize=True,
                                                 normalization="integral").array)
    for l in range(4):
        s = slice(l * l, (l + 1) ** 2)
        # bases may differ by an orthogonal change of basis within each l: compare Gram matrices
        np.testing.assert_allclose(ours[:, s] @ ours[:, s].T, theirs[:, s] @ theirs[:, s].T, atol=1e-12)


def _jit(desc):
    """The descriptor, compiled (eager op-by-op execution is slow on two cores)."""
    return jax.jit(lambda R, Z, mask, box=None, nb=None: desc(R, Z, mask, box, nb))


def _tetra_and_square(d=1.0):
    tet = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3) * d
    sq = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]) * d
    return [np.vstack([np.zeros(3), x]) for x in (tet, sq)]


def test_power_spectrum_sees_angles_that_radial_features_cannot():
    desc = power_spectrum((1, 8), cutoff=4.0, n_radial=5, l_max=3)
    system = System.create(["O", "H", "H", "H", "H"])
    Gt, Gs = (np.asarray(_jit(desc)(jnp.asarray(R), system.species, system.mask))[0] for R in _tetra_and_square())
    n_g2 = 2 * 5  # radial block of the centre (O) species: 2 neighbour species × 5 channels
    o_block = slice(desc.size // 2, desc.size // 2 + n_g2)  # O is species index 1 (sorted 1, 8)
    # identical distances: the centre's radial (two-body) features agree exactly ...
    np.testing.assert_allclose(Gt[o_block], Gs[o_block], atol=1e-12)
    assert np.max(np.abs(Gt[o_block])) > 1e-2
    # ... while the power spectrum (three-body) tells the two apart
    assert np.max(np.abs(Gt - Gs)) > 0.1


def _cluster(n=7, seed=0):
    rng = np.random.default_rng(seed)
    R = rng.uniform(-2.0, 2.0, size=(n, 3))
    return jnp.asarray(R), System.create(["O", "H", "H", "O", "H", "H", "H"][:n])


def test_invariants_are_o3_translation_and_permutation_invariant():
    full = power_spectrum((1, 8), cutoff=4.0, n_radial=4, l_max=3)
    desc = full._replace(expand=jax.jit(full.expand), invariants=jax.jit(full.invariants))
    R, system = _cluster()
    G0 = desc(R, system.species, system.mask)
    Q = jnp.asarray(testing.random_orthogonal(jax.random.PRNGKey(2), reflection=True))
    G1 = desc(R @ Q.T + jnp.array([[0.3, -1.0, 2.0]]), system.species, system.mask)
    np.testing.assert_allclose(G1, G0, atol=1e-12)
    perm = np.array([3, 1, 2, 0, 6, 5, 4])  # swap the Os and some Hs
    np.testing.assert_allclose(desc(R[perm], system.species, system.mask), G0[perm], atol=1e-12)
    # non-trivial: the features move with the atoms, and the equivariant expansion does rotate
    assert np.max(np.abs(desc(R + 0.1 * jnp.arange(21.0).reshape(7, 3) / 21, system.species, system.mask)
                         - G0)) > 1e-3
    A0 = desc.expand(R, system.species, system.mask)
    A1 = desc.expand(R @ Q.T, system.species, system.mask)
    assert np.max(np.abs(A1 - A0)) > 1e-2
    # the l = 1 vectors rotate as vectors
    np.testing.assert_allclose(desc.vectors(A1), desc.vectors(A0) @ Q.T, atol=1e-12)


def test_padding_changes_nothing_and_keeps_gradients_finite():
    desc = power_spectrum((1, 8), cutoff=4.0, n_radial=4, l_max=2)
    R, system = _cluster()
    G0 = _jit(desc)(R, system.species, system.mask)
    Rp, sp = pad_positions(R, 10), system.pad(10)
    G1 = _jit(desc)(Rp, sp.species, sp.mask)
    np.testing.assert_allclose(G1[:7], G0, atol=1e-14)
    np.testing.assert_allclose(G1[7:], 0.0, atol=0)
    g = jax.jit(jax.grad(lambda x: jnp.sum(desc(x, sp.species, sp.mask) ** 2)))(Rp)
    assert np.all(np.isfinite(g)) and np.max(np.abs(g[:7])) > 1e-3
    np.testing.assert_allclose(g[7:], 0.0, atol=0)


@pytest.mark.parametrize("kind, fmt", [("power_spectrum", "dense"), ("power_spectrum", "sparse"),
                                       ("symmetry", "dense")])
def test_neighbor_list_equals_all_pairs_in_a_periodic_box(kind, fmt):
    R, Z, side = water_box(4, spacing=3.1)  # 64 waters, 12.4 Å box
    R = np.mod(R, side)
    system = System.create(Z.tolist(), box=side)
    _, desc = make_descriptor((1, 8), kind=kind, cutoff=4.5, n_radial=4, l_max=2, zetas=(1.0, 2.5))
    nf = neighbor_list_fn(system.box, desc.cutoff, skin=0.4, format=fmt)
    nbrs = nf.allocate(jnp.asarray(R))
    f = lambda x, nb: jnp.sum(jnp.sin(desc(x, system.species, system.mask, system.box, nb)))  # noqa: E731
    d = _jit(desc)
    G_nl = d(jnp.asarray(R), system.species, system.mask, system.box, nbrs)
    G_all = d(jnp.asarray(R), system.species, system.mask, system.box)
    np.testing.assert_allclose(G_nl, G_all, atol=1e-12)
    g = jax.jit(jax.grad(f))
    np.testing.assert_allclose(g(jnp.asarray(R), nbrs), g(jnp.asarray(R), None), atol=1e-11)
    # non-trivial: the list is local (far fewer slots than all pairs) and the images matter
    n = len(Z)
    slots = nbrs.idx.shape[1] if fmt == "dense" else nbrs.idx.shape[1] / n
    assert slots < 0.5 * n
    G_free = d(jnp.asarray(R), system.species, system.mask)
    assert np.max(np.abs(G_free - G_all)) > 1e-2


def test_symmetry_functions_refuse_a_sparse_neighbor_list():
    R, Z, side = water_box(2, spacing=3.1)
    system = System.create(Z.tolist(), box=side)
    _, desc = make_descriptor((1, 8), kind="symmetry", cutoff=2.5)
    nbrs = neighbor_list_fn(system.box, desc.cutoff, format="sparse").allocate(jnp.asarray(np.mod(R, side)))
    with pytest.raises(QdynInputError, match="Dense"):
        desc(jnp.asarray(R), system.species, system.mask, system.box, nbrs)


def test_bad_descriptor_input_is_refused():
    with pytest.raises(QdynInputError, match="unknown descriptor"):
        make_descriptor((1, 8), kind="soap")
    with pytest.raises(QdynInputError, match="l_max must be 1..3"):
        power_spectrum((1, 8), l_max=4)
    with pytest.raises(QdynInputError, match="unknown radial basis"):
        radial_basis("slater", n=4, cutoff=5.0)
    with pytest.raises(QdynInputError, match="periodic boxes"):
        neighbor_list_fn(None, 5.0)
    with pytest.raises(QdynInputError, match="unknown neighbour-list format"):
        neighbor_list_fn(np.eye(3) * 10, 5.0, format="ordered")
