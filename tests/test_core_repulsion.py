"""The core-repulsion wall: zero where the data is, C², steep inside, symmetric; radii from
data (minimum image); the hybrid model with a wall passes the physics checks in a periodic
box whose pairs reach into the wall; configs with ``core_radii: auto`` record numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import testing
from qdyn.compiled import shared_jit
from qdyn.data import Dataset, load_shipped
from qdyn.descriptors.neighbors import neighbor_list_fn
from qdyn.models import hybrid
from qdyn.models.core_repulsion import core_radii_from_data, core_repulsion
from qdyn.models import build_model
from qdyn.structures import water_dimer, water_lattice
from qdyn.validation import QdynInputError

RADII = {"H-H": 1.2, "H-O": 0.8, "O-O": 2.3}


def _pair_energy(wall, r, z=(1, 1)):
    R = jnp.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    return wall(R, jnp.array(z), jnp.array([True, True]))


def test_wall_is_zero_outside_c2_at_the_radius_and_steep_inside():
    wall = core_repulsion((1, 8), RADII)
    # zero at and beyond r_in, for every pair type
    for z, r in (((1, 1), 1.2), ((1, 8), 0.8), ((8, 8), 2.3)):
        for d in (0.0, 1e-3, 1.0):
            assert float(_pair_energy(wall, r + d, z)) == 0.0
    # A ((r_in - r)/w)³ inside: 1 eV at one width, 8 eV at two
    np.testing.assert_allclose(float(_pair_energy(wall, 1.1)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(float(_pair_energy(wall, 1.0)), 8.0, rtol=1e-12)
    np.testing.assert_allclose(float(_pair_energy(wall, 2.1, (8, 8))), 8.0, rtol=1e-12)
    # C² at r_in: first and second derivative → 0 from inside, like h and h²... (they are 3A h²/w³, 6A h/w³)
    d1 = jax.grad(lambda r: _pair_energy(wall, r))
    d2 = jax.grad(d1)
    h = 1e-4
    np.testing.assert_allclose(float(d1(1.2 - h)), -3.0 * h**2 / 0.1**3, rtol=1e-9)
    np.testing.assert_allclose(float(d2(1.2 - h)), 6.0 * h / 0.1**3, rtol=1e-9)
    assert float(d1(1.2 + h)) == 0.0 and float(d2(1.2 + h)) == 0.0
    # atom energies split each pair between its two ends
    R = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.7, 0.0]])
    Z, m = jnp.array([1, 1, 8]), jnp.ones(3, bool)
    ea = wall.atom_energies(R, Z, m)
    np.testing.assert_allclose(float(jnp.sum(ea)), float(wall(R, Z, m)), rtol=1e-14)
    assert float(ea[2]) > 0 and float(wall(R, Z, m)) > 8.0


def test_bad_wall_settings_are_refused():
    with pytest.raises(QdynInputError, match="'H-C'.*does not handle"):
        core_repulsion((1, 8), {"H-C": 1.0})
    with pytest.raises(QdynInputError, match="look like 'H-O'"):
        core_repulsion((1, 8), {"HO": 1.0})
    with pytest.raises(QdynInputError, match="positive"):
        core_repulsion((1, 8), {"H-O": -0.5})
    with pytest.raises(QdynInputError, match="cannot read pair 'H-Xx'"):
        core_repulsion((1, 8), {"H-Xx": 1.0})


def test_radii_from_data_use_the_minimum_image_and_the_shortest_pair():
    R = np.array([[[0.5, 0.0, 0.0], [9.7, 0.0, 0.0], [5.0, 5.0, 5.0]]])
    Z = np.array([[1, 1, 8]])
    cell = (10.0 * np.eye(3))[None]
    free = core_radii_from_data(R, Z, fraction=1.0)
    periodic = core_radii_from_data(R, Z, cell=cell, pbc=np.ones((1, 3), bool), fraction=1.0)
    np.testing.assert_allclose(free["H-H"], 9.2)
    np.testing.assert_allclose(periodic["H-H"], 0.8)  # through the boundary
    not_periodic = core_radii_from_data(R, Z, cell=cell, pbc=np.zeros((1, 3), bool), fraction=1.0)
    np.testing.assert_allclose(not_periodic["H-H"], 9.2)
    ds = load_shipped("H2O")
    radii = core_radii_from_data(ds.R, ds.Z)  # 0.9 × the shortest O–H and H–H in the shipped data
    assert set(radii) == {"H-H", "H-O"} and 0.7 < radii["H-O"] < 0.85 and 1.0 < radii["H-H"] < 1.3


def test_wall_in_a_periodic_box_images_padding_fd_forces_and_neighbor_lists():
    from qdyn.system import System

    wall = core_repulsion((1, 8), RADII)
    # a periodic box (8 waters, 9.2 Å) with one molecule pushed onto another: its O 2.0 Å
    # from the first O, so O–O (and nearby H pairs) are inside the wall
    Rb, sb = water_lattice(2, spacing=4.6, seed=0)
    Rb = np.asarray(Rb).copy()
    Rb[3:6] += Rb[0] + np.array([2.0, 0.0, 0.0]) - Rb[3]
    Rb = jnp.asarray(Rb)
    E = jax.jit(lambda R, box, nbr: wall(R, sb.species, sb.mask, box, nbr))
    E0 = float(E(Rb, sb.box, None))
    assert E0 > 1.0  # the pushed molecule reaches into the wall
    # lattice shifts of single atoms and wrapping change nothing (minimum image)
    shift = jnp.zeros_like(Rb).at[4].set(sb.box[:, 0]).at[7].set(-sb.box[:, 2])
    np.testing.assert_allclose(float(E(Rb + shift, sb.box, None)), E0, rtol=1e-13)
    # padding atoms (far away, masked) change nothing
    Rp = jnp.concatenate([Rb, jnp.full((2, 3), 0.1)])
    sp = System.create(list(sb.symbols) + ["H", "H"], box=sb.box, mask=[True] * 24 + [False] * 2)
    np.testing.assert_allclose(float(wall(Rp, sp.species, sp.mask, sp.box)), E0, rtol=1e-13)
    # forces = -∇E against central differences (float64)
    g = jax.grad(lambda R: E(R, sb.box, None))(Rb)
    assert float(jnp.max(jnp.abs(g))) > 1.0
    d = jax.random.normal(jax.random.PRNGKey(3), Rb.shape)
    h = 1e-5
    fd = (float(E(Rb + h * d, sb.box, None)) - float(E(Rb - h * d, sb.box, None))) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(g * d)), fd, rtol=1e-7)
    # JAX-MD neighbour lists (dense and sparse) give the all-pairs answer
    for fmt in ("dense", "sparse"):
        nbrs = neighbor_list_fn(sb.box, 2.5, skin=0.3, format=fmt).allocate(Rb)
        np.testing.assert_allclose(float(E(Rb, sb.box, nbrs)), E0, rtol=1e-12)


def test_hybrid_adds_exactly_the_wall_and_rebuilds_it_from_its_config():
    kw = dict(species=(1, 8), descriptor="power_spectrum", cutoff=4.0, n_radial=3, l_max=2, hidden=(6,),
              branch="reupload", n_qubits=2, layers=1)
    plain, walled = hybrid.build(**kw), hybrid.build(**kw, core_radii=RADII)
    params = testing.randomize_params(plain.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    R, system = water_dimer()
    R = jnp.asarray(R)
    E_plain, E_walled = jax.jit(plain.apply), shared_jit(walled.apply)  # compiled: op by op costs seconds
    # outside the wall nothing changes; pushed together, the difference is the wall's energy
    np.testing.assert_allclose(float(E_walled(params, R, system)), float(E_plain(params, R, system)),
                               rtol=1e-14)
    Rc = R.at[3:].add(R[0] + jnp.array([2.0, 0.0, 0.0]) - R[3])
    wall = core_repulsion((1, 8), RADII)
    e_wall = float(wall(Rc, system.species, system.mask))
    assert e_wall > 1.0
    np.testing.assert_allclose(float(E_walled(params, Rc, system) - E_plain(params, Rc, system)), e_wall,
                               rtol=1e-10)
    ea = jax.jit(walled.atom_energies)(params, Rc, system)
    np.testing.assert_allclose(float(jnp.sum(ea)), float(E_walled(params, Rc, system)), rtol=1e-12)
    again = build_model(walled.config)
    assert again.config["core_radii"] == {"H-H": 1.2, "H-O": 0.8, "O-O": 2.3}
    np.testing.assert_allclose(float(shared_jit(again.apply)(params, Rc, system)), float(E_walled(params, Rc, system)),
                               rtol=1e-14)


def test_auto_radii_are_taken_from_the_training_frames_and_recorded(tmp_path):
    from qdyn.train import parse_config
    from qdyn.train.trainer import _model_config, load_data, split_data

    cfg = parse_config({"model": {"family": "hybrid", "descriptor": "power_spectrum", "core_radii": "auto"},
                        "data": {"path": ["shipped:H2O", "shipped:H2O_stretched"], "n_train": 600, "n_val": 20,
                                 "n_test": 26}})
    ds = load_data(cfg.data)
    assert ds.n_frames == len(load_shipped("H2O").E) + len(load_shipped("H2O_stretched").E)
    train_ds = split_data(ds, cfg.data)[0]
    mc = _model_config(cfg, [1, 8], train_ds)
    assert mc["core_radii"] == core_radii_from_data(train_ds.R, train_ds.Z)
    assert mc["core_radii"]["H-O"] < 0.75 * 0.95  # the stretched set's compressed bonds (0.75 Å) are in
    with pytest.raises(Exception, match="core_radii"):
        parse_config({"model": {"family": "hybrid", "core_radii": "sometimes"}})
    assert isinstance(Dataset.concatenate([ds, ds]), Dataset)
