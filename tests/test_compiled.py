"""qdyn.compiled: executables shared by equal programs, never by programs that differ."""

import jax
import jax.numpy as jnp
import numpy as np

from qdyn import compiled


def _scaled_sum(weights):
    """A fresh closure each call, as train() builds its step: the weights are baked in."""
    return compiled.shared_jit(lambda x: jnp.sum(weights * jnp.sin(x)))


def test_equal_programs_share_one_executable():
    w = np.linspace(0.0, 1.0, 1000)
    x = jnp.linspace(-1.0, 1.0, 1000)
    first, second = _scaled_sum(w), _scaled_sum(w.copy())
    a = first(x)  # compiled here, or reused from an earlier test of this worker
    before = compiled.stats()
    b = second(x)
    after = compiled.stats()
    assert float(a) == float(b)
    assert after["reused"] - before["reused"] == 1 and after["compiled"] == before["compiled"]


def test_programs_that_differ_only_in_a_large_constant_are_not_shared():
    x = jnp.linspace(-1.0, 1.0, 1000)
    w = np.linspace(0.0, 1.0, 1000)
    w_changed = w.copy()
    w_changed[617] += 0.5  # one element of a 1000-element constant: the text must still differ
    a = _scaled_sum(w)(x)
    b = _scaled_sum(w_changed)(x)
    np.testing.assert_allclose(float(b) - float(a), 0.5 * float(jnp.sin(x[617])), rtol=1e-12)
    assert abs(float(b) - float(a)) > 1e-3


def test_each_signature_compiles_its_own_program():
    f = _scaled_sum(np.float64(2.0))
    assert float(f(jnp.zeros(3))) == 0.0
    assert float(f(jnp.ones(4))) == jax.numpy.float64(8.0 * np.sin(1.0)).item()
    f(jnp.ones(4))  # a repeated signature: no new program
    assert f.compilations() == 2
