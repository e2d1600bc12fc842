"""NPT and triclinic cells in the MD layer, on a Lennard-Jones argon crystal whose energy
reads the cell from ``system.box`` exactly as qdyn's periodic models do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import md, units
from qdyn.geometry import cutoff_fn, dense_edges
from qdyn.md.integrators import make_integrator, make_space, masses, npt_conserved_quantity
from qdyn.system import System
from qdyn.validation import QdynInputError

def make_lj(rc):
    """Lennard-Jones with a C² cutoff at rc [Å] (below half the smallest cell width)."""

    def lj(R, *, params, system, neighbor=None):
        e = dense_edges(R, system.mask, system.box)  # r = 1 Å on invalid pairs: no NaN gradient
        x = (params["sigma"] / e.r) ** 6
        lj = 4 * params["eps"] * (x * x - x) * cutoff_fn(e.r, rc)
        return 0.5 * jnp.sum(jnp.where(e.valid, lj, 0.0))

    return lj


lj = make_lj(4.8)  # the 2×2×2 cell (10.6 Å) stays wider than 2 × 4.8 Å at the pressures used


PARAMS = {"sigma": jnp.asarray(3.40), "eps": jnp.asarray(0.0104)}  # argon, Å and eV


def fcc(n, a):
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)])
    return ((g[:, None, :] + base[None]) * a).reshape(-1, 3), np.eye(3) * n * a


def test_npt_conserved_quantity_and_temperature():
    R, box = fcc(2, 5.30)
    system = System.create(["Ar"] * len(R), box=box)
    sp = make_space(system, variable_cell=True)
    integ = make_integrator(lj, sp.shift_fn, ensemble="npt", dt_fs=4.0, temperature_K=40.0, pressure_bar=1000.0,
                            tau_fs=200.0, barostat_tau_fs=1000.0)
    m = jnp.asarray(masses(system))
    p = md.momenta.maxwell_boltzmann(jax.random.PRNGKey(0), jnp.asarray(R), m, temperature_K=40.0)
    state = integ.init(jax.random.PRNGKey(1), jnp.asarray(R), mass=m, momenta=p, params=PARAMS, system=system)

    def body(s, _):
        s = integ.step(s, params=PARAMS, system=system)
        H = npt_conserved_quantity(integ, lj, s, params=PARAMS, system=system)
        return s, (H, md.momenta.kinetic_energy(s.momentum, m), integ.observe(s, system)[1].box)

    state, (H, KE, boxes) = jax.jit(lambda s: jax.lax.scan(body, s, None, length=1000))(state)
    H, KE, vol = np.asarray(H), np.asarray(KE), np.linalg.det(np.asarray(boxes))
    # the extended energy is conserved while kinetic energy and volume fluctuate
    assert np.std(vol) / np.mean(vol) > 1e-3
    assert np.std(KE) > 0.01
    assert np.max(np.abs(H - H[0])) < 0.02 * np.std(KE)
    # observe() returns Cartesian positions inside the current cell
    Rc, sys_now = integ.observe(state, system)
    frac = np.asarray(Rc) @ np.linalg.inv(np.asarray(sys_now.box)).T
    assert frac.min() >= -1e-12 and frac.max() <= 1 + 1e-12


def test_npt_volume_responds_to_pressure_and_is_reported(tmp_path):
    R, box = fcc(2, 5.30)
    system = System.create(["Ar"] * len(R), box=box)
    vols = {}
    for P in (1.0, 3000.0):
        res = md.run_md(lj, PARAMS, R, system,
                        md.MDSettings(ensemble="npt", dt_fs=4.0, n_steps=1500, temperature_K=40.0, replicas=2,
                                      tau_fs=200.0, pressure_bar=P, barostat_tau_fs=1000.0),
                        output=md.MDOutput(out_dir=tmp_path / f"p{P:g}", trajectory_formats=("extxyz", "h5md"),
                                           stride=10, progress=None))
        half = len(res.volume) // 2
        vols[P] = res.volume[half:].mean()
        np.testing.assert_allclose(res.temperature[half:].mean(), 40.0, rtol=0.15)
        np.testing.assert_allclose(np.linalg.det(res.cell), res.volume[:, :1], rtol=1e-12)
    # a solid compressed by 0.3 GPa shrinks by several percent (argon's bulk modulus is a few GPa)
    assert vols[3000.0] < 0.95 * vols[1.0]
    # the trajectories carry the changing cell
    from ase.io import read

    from qdyn.md.trajectory import read_h5md

    frames = read(tmp_path / "p3000" / "trajectory.xyz", index=":")
    assert abs(frames[0].get_volume() - frames[-1].get_volume()) > 1.0
    h = read_h5md(tmp_path / "p3000" / "trajectory.h5")
    assert h["box"].shape == (len(frames), 3, 3)
    np.testing.assert_allclose(h["box"][-1], np.asarray(frames[-1].cell).T, atol=1e-6)
    import json

    summary = json.loads((tmp_path / "p3000" / "md.json").read_text())
    assert summary["pressure_bar"] == 3000.0 and summary["mean_density_g_cm3"] > 1.5


def test_triclinic_cell_gives_the_same_dynamics_as_the_equivalent_cube():
    """A skewed cell spanning the same lattice as a cube: same forces, same trajectory."""
    R, cube = fcc(3, 5.30)
    L = cube[0, 0]
    lj55 = make_lj(5.5)  # the skewed cell is L/√2 = 11.2 Å wide
    skew = np.array([[L, L, 0.0], [0.0, L, 0.0], [0.0, 0.0, L]])  # columns: a1, a1 + a2, a3
    R = R + 0.05 * np.random.default_rng(0).normal(size=R.shape)
    runs = []
    for box in (cube, skew):
        system = System.create(["Ar"] * len(R), box=box)
        res = md.run_md(lj55, PARAMS, R, system,
                        md.MDSettings(ensemble="nve", dt_fs=4.0, n_steps=200, temperature_K=40.0),
                        output=md.MDOutput(stride=10, progress=None), key=jax.random.PRNGKey(3))
        runs.append(res)
    a, b = runs
    np.testing.assert_allclose(a.total, b.total, rtol=0, atol=1e-9)
    # positions agree modulo the lattice
    d = a.position - b.position
    frac = d @ np.linalg.inv(cube).T
    np.testing.assert_allclose(frac - np.round(frac), 0.0, atol=1e-8)
    assert np.max(np.abs(a.potential - a.potential[0])) > 1e-3  # something happened


def test_npt_refuses_free_space_and_missing_pressure():
    R, box = fcc(2, 5.30)
    with pytest.raises(QdynInputError, match="periodic"):
        md.run_md(lj, PARAMS, R, System.create(["Ar"] * len(R)),
                  md.MDSettings(ensemble="npt", dt_fs=4.0, n_steps=10, pressure_bar=1.0),
                  output=md.MDOutput(stride=10, progress=None))
    with pytest.raises(QdynInputError, match="pressure_bar"):
        md.run_md(lj, PARAMS, R, System.create(["Ar"] * len(R), box=2 * box),
                  md.MDSettings(ensemble="npt", dt_fs=4.0, n_steps=10),
                  output=md.MDOutput(stride=10, progress=None))
    with pytest.raises(QdynInputError, match="right-handed"):
        make_space(System.create(["Ar"] * len(R), box=np.diag([10.0, 10.0, -10.0])))
