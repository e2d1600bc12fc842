import os

# Two cores: keep XLA from oversubscribing them when pytest-xdist runs two workers.
# CLI tests must not write JAX's persistent compilation cache into the user's home.
os.environ.setdefault("QDYN_NO_CACHE", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import pytest  # noqa: E402

from qdyn import enable_x64  # noqa: E402

# Tests are an entry point: float64 is switched on here, never on import of qdyn.
enable_x64()


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture
def pyscf_one_thread():
    """PySCF on one thread (labelling tests): results independent of the core count, and
    no oversubscription when pytest-xdist runs two workers."""
    from pyscf import lib

    before = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(before)
