"""Neighbour lists in a periodic box: overflow detected after a block and the block redone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdyn import md
from qdyn.md.potentials import flexible_water
from qdyn.structures import water_box
from qdyn.system import System


def _box():
    R, Z, side = water_box(3, spacing=3.1)  # 27 molecules, 9.3 Å box
    return R, System.create(Z.tolist(), box=side), side


def test_neighbor_energy_equals_dense():
    R, system, side = _box()
    sp = md.make_space(system)
    pot = flexible_water(sp.displacement_fn, side, n_molecules=27)
    params = pot.init_params()
    nb = pot.neighbor_fn.allocate(jnp.asarray(R))
    energy = jax.jit(pot.energy_fn)  # compiled: op by op costs a compile per operation
    e_nl = energy(jnp.asarray(R), params=params, system=system, neighbor=nb)
    e_dense = energy(jnp.asarray(R), params=params, system=system)
    np.testing.assert_allclose(e_nl, e_dense, rtol=1e-12)
    assert abs(float(e_dense)) > 1e-3  # non-trivial: the intermolecular term contributes


@pytest.mark.slow
def test_overflow_is_detected_and_the_block_redone():
    R, system, side = _box()
    sp = md.make_space(system)
    kw = dict(key=jax.random.PRNGKey(0), output=md.MDOutput(stride=10, frames_per_block=4, progress=None))
    settings = md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=400, temperature_K=600.0)
    # no spare capacity: the first O–O pair that comes within the cutoff overflows the list
    tight = flexible_water(sp.displacement_fn, side, n_molecules=27, capacity_multiplier=1.0)
    roomy = flexible_water(sp.displacement_fn, side, n_molecules=27, capacity_multiplier=2.0)
    params = tight.init_params()
    res = md.run_md(tight.energy_fn, params, R, system, settings, neighbor_fn=tight.neighbor_fn, **kw)
    ref = md.run_md(roomy.energy_fn, params, R, system, settings, neighbor_fn=roomy.neighbor_fn, **kw)
    assert res.n_reallocations >= 1
    assert ref.n_reallocations == 0
    # redone blocks leave no trace: the trajectory equals the one that never overflowed
    np.testing.assert_allclose(res.position, ref.position, atol=1e-9)
    np.testing.assert_allclose(res.total, ref.total, atol=1e-9)
    # and both match a dense (all pairs) energy at the end
    e_dense = jax.jit(tight.energy_fn)(jnp.asarray(res.state.position[0]), params=params, system=system)
    np.testing.assert_allclose(res.potential[-1, 0], e_dense, rtol=1e-10)
    # the molecules moved enough for the check to mean something
    assert np.ptp(res.potential) > 0.1
