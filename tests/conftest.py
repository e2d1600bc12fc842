import json
import os

# CLI tests must not write JAX's persistent compilation cache into the user's home, and the
# suite keeps no cache of its own: on the CPU backend a cached executable is loaded by XLA's
# AOT loader, which warns "could lead to execution errors such as SIGILL" on this hardware
# (jax-ml/jax#38445), and a test worker died of a fatal signal in CI while one was in use.
# Every process compiles what it runs.
os.environ.setdefault("QDYN_NO_CACHE", "1")
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
# Two cores: keep XLA from oversubscribing them when pytest-xdist runs two workers.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# The suite is compile-bound: most tests compile a program and run it a few times. XLA's
# optimisation passes cost more than they save there (measured: a hybrid second-order program
# compiles 2-3x faster, runs as fast); results are the same programs' results, and nothing
# here compares against numbers produced with optimisation on. Inherited by xdist workers,
# notebook kernels and CLI subprocesses. Set QDYN_TEST_OPTIMIZE=1 to test optimised programs.
if os.environ.get("QDYN_TEST_OPTIMIZE") != "1":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

from qdyn import enable_x64  # noqa: E402

# Tests are an entry point: float64 is switched on here, never on import of qdyn.
enable_x64()
# One CPU device per worker, whatever a test asks of qdyn.parallel.use_cpu_cores (which would
# otherwise succeed or not depending on whether an earlier test had started JAX): the two
# xdist workers share the two cores. Multi-device runs happen in subprocesses.
jax.config.update("jax_num_cpu_devices", 1)
# Implicit rank promotion (adding [n] to [n, 3]) is how silent shape bugs hide: tests make it
# an error, so every broadcast in qdyn is written out ([:, None], broadcast_to).
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def write_run():
    """``write_run(path, model, params) -> (model, params)``: a finished run directory written
    by hand (``model.json`` + ``params.msgpack``, what training leaves), for the CLI tests that
    need a model without training one."""
    from qdyn import checkpoint

    def write(path, model, params):
        path.mkdir(parents=True)
        checkpoint.save_params(path / "params.msgpack", params)
        (path / "model.json").write_text(json.dumps({"model": model.config}))
        return model, params

    return write


@pytest.fixture
def emt_labeler():
    """ASE's EMT calculator as a labeller: cheap, analytic forces, no PySCF."""
    from ase.calculators.emt import EMT

    from qdyn.data import ASELabeler

    return ASELabeler(calculator_factory=EMT, name="EMT")


@pytest.fixture
def pyscf_one_thread():
    """PySCF on one thread (labelling tests): results independent of the core count, and
    no oversubscription when pytest-xdist runs two workers."""
    from pyscf import lib

    before = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(before)


# A script the multi-device tests run in subprocesses: it sets XLA_FLAGS (a forced device
# count) when imported, so --doctest-modules must not import it into a test worker.
collect_ignore = ["parallel_check.py"]


# Each test module runs whole on one xdist worker: its tests share models and compiled programs
# (module fixtures, qdyn.compiled's table, JAX's caches of eager operations), and split across
# two workers each worker compiled them again. The notebooks are independent kernels: each
# is its own unit. (xdist's own `--dist loadgroup` marks do nothing under pytest >= 9.2, which
# derives node ids from a field xdist no longer sets; the grouping is done in the scheduler.)
SPLIT_MODULES = frozenset({"test_notebooks"})


def pytest_xdist_make_scheduler(config, log):
    """Scope scheduling: a test module is one unit of work (a notebook is one), handed to
    whichever worker is free, in collection order (modules with slow tests first)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return nodeid if module.rsplit("/", 1)[-1].removesuffix(".py") in SPLIT_MODULES else module

    config.option.loadscopereorder = False  # keep the slow-first order below, not largest unit first
    return ModuleScheduling(config, log)


# Modules of 40 s or more (measured, 2 cores): handed out right after the slow tests, so that
# the suite ends on short modules and neither worker idles long at the end.
LONG_MODULES = frozenset({
    "test_circuits", "test_deploy", "test_descriptors_equivariant", "test_influence", "test_md_run",
    "test_model_families", "test_models_hybrid_variants", "test_models_physics", "test_parallel", "test_train",
    "test_uncertainty",
})


def pytest_collection_modifyitems(config, items):
    # The long tests (notebooks, physics runs: marked slow) and long modules first: run last,
    # one of them kept a worker busy for a minute or two while the other idled.
    def rank(item):
        if item.get_closest_marker("slow") is not None:
            return 0
        return 1 if item.path.stem in LONG_MODULES else 2

    items.sort(key=rank)


# When a test worker drops its compiled programs (below): past either bound.
MAX_MAPPINGS = 40_000  # of the kernel's 65,530 per process; one test module adds up to ~12,000
MAX_RSS_BYTES = 4 * 2**30
# Resident memory does not come back when the caches are cleared (measured: 1.50 -> 1.48 GiB;
# the freed memory stays with the allocator and is reused), so past a clear the memory bound
# moves up to what is resident then plus this much. With a fixed bound, a worker that once
# passed it cleared after every later test and compiled every eager operation again: 5,459
# repeated compiles, 392 s of the suite's workers.
RSS_HEADROOM_BYTES = 2**30
_rss_bound = [MAX_RSS_BYTES]


def _mappings_and_rss():
    """(memory mappings, resident bytes) of this process; (0, 0) where /proc is not there."""
    try:
        with open("/proc/self/maps") as maps:
            n_maps = sum(1 for _ in maps)
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0, 0
    return n_maps, rss


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Drop every compiled program once a test worker holds too many.

    Each XLA:CPU executable keeps memory mappings for its kernels, and without XLA's
    optimisation passes (above) a program has many more kernels. A test worker that kept every
    program for the whole suite passed the kernel's limit of 65,530 mappings per process
    (vm.max_map_count; measured: 12,400 after one test module, 1,500 once cleared) and died of
    a segmentation fault inside the compiler. Clearing after every module instead cost the
    suite its shared compilations: each module compiled the same eager operations, random
    initialisers and qdyn's cached MD builders again (four model modules: 283 s clearing
    after each, 237 s clearing at the bounds). So the caches are cleared between tests, when
    the mappings or the resident memory pass a bound.
    """
    yield
    n_maps, rss = _mappings_and_rss()
    if n_maps > MAX_MAPPINGS or rss > _rss_bound[0]:
        import gc

        jax.clear_caches()
        gc.collect()
        _rss_bound[0] = max(_rss_bound[0], _mappings_and_rss()[1] + RSS_HEADROOM_BYTES)
