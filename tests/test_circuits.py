"""Every circuit family's pure-JAX expval equals its native-gate PennyLane QNode, and the
invariant native QNode equals the demo-style expm reference: values, gradients and the second
order a force loss needs, to 1e-10."""

import jax
import jax.numpy as jnp
import numpy as np
import pennylane as qml
import pytest

from qdyn.quantum.circuit import ring
from qdyn.quantum.hardware_efficient import hardware_efficient_circuit
from qdyn.quantum.invariant import invariant_circuit
from qdyn.quantum.layout import build_layout
from qdyn.quantum.qsf import qsf_circuit
from qdyn.quantum.reupload import reupload_circuit
from qdyn.quantum.templates import TEMPLATES, MoleculeTemplate
from qdyn.structures import lih, rattle, water, water_dimer

CASES = {
    "LiH": (lih()[0], dict(rep=2, layers=2, blocks=2)),
    "H2O": (water()[0], dict(rep=2, layers=3, blocks=1)),
    "H2O_all_eps": (water()[0], dict(rep=2, layers=2, blocks=1, coupling="all", symmetry_breaking=True)),
    "water_dimer": (water_dimer()[0], dict(rep=1, layers=1, blocks=1)),  # 6 qubits: one layer shows the clusters
}


def _vecs_and_params(name, seed=0):
    R, kw = CASES[name]
    template = TEMPLATES[name.split("_all")[0]]
    layout = build_layout(template, **kw)
    R = rattle(R, seed)
    vecs = jnp.asarray([R[h] - R[t] for h, t in template.vectors])
    shapes = layout.param_shapes()
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    cparams = {k: jax.random.normal(kk, s, jnp.float64) for (k, s), kk in zip(sorted(shapes.items()), keys)}
    return layout, vecs, cparams


@pytest.mark.parametrize("name", list(CASES))
def test_statevector_equals_qnodes(name):
    layout, vecs, cparams = _vecs_and_params(name)
    circuit = invariant_circuit(layout)
    sv, native, ref = circuit.expval, circuit.qnode(), circuit.qnode(style="expm")
    # one value-and-gradient call per path for both arguments; the fast paths jitted (cheaper
    # than eager), the expm reference eager (cheaper than compiling its matrix exponentials)
    both = lambda f: jax.value_and_grad(f, argnums=(0, 1))  # noqa: E731
    (v_sv, g_sv), (v_cl, g_nat) = jax.jit(both(sv))(cparams, vecs), jax.jit(both(native))(cparams, vecs)
    v_ref, g_ref = both(ref)(cparams, vecs)
    np.testing.assert_allclose(float(v_sv), float(v_ref), atol=1e-10)
    np.testing.assert_allclose(float(v_cl), float(v_ref), atol=1e-10)
    assert abs(float(v_ref)) > 1e-3  # not a trivial zero
    for a, b, c in zip(*map(jax.tree_util.tree_leaves, (g_sv, g_ref, g_nat))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-10)
        np.testing.assert_allclose(np.asarray(c), np.asarray(b), atol=1e-10)


def test_statevector_equals_qnode_under_jit_and_vmap():
    layout, vecs, cparams = _vecs_and_params("H2O")
    batch = jnp.stack([vecs, 1.1 * vecs, vecs[::-1]])
    circuit = invariant_circuit(layout)
    sv = jax.jit(jax.vmap(jax.grad(circuit.expval, argnums=1), in_axes=(None, 0)))
    ref = jax.jit(jax.vmap(jax.grad(circuit.qnode(style="expm"), argnums=1), in_axes=(None, 0)))
    np.testing.assert_allclose(np.asarray(sv(cparams, batch)), np.asarray(ref(cparams, batch)), atol=1e-10)


def test_scan_unroll_does_not_change_results():
    layout, vecs, cparams = _vecs_and_params("H2O")
    a = jax.jit(invariant_circuit(layout, scan_unroll=1).expval)(cparams, vecs)
    b = jax.jit(invariant_circuit(layout, scan_unroll=3).expval)(cparams, vecs)
    np.testing.assert_allclose(float(a), float(b), atol=1e-13)


@pytest.mark.parametrize("name", list(CASES))
def test_expectation_within_spectrum(name):
    layout, vecs, cparams = _vecs_and_params(name, seed=3)
    scaled = vecs[None] * jnp.linspace(0.1, 5, 16)[:, None, None]
    vals = jax.jit(jax.vmap(invariant_circuit(layout).expval, in_axes=(None, 0)))(cparams, scaled)
    # mean of (XX+YY+ZZ) over pairs: eigenvalues of one term are -3 and +1
    assert np.all(np.asarray(vals) >= -3 - 1e-12) and np.all(np.asarray(vals) <= 1 + 1e-12)


def test_backprop_equals_parameter_shift():
    layout, vecs, cparams = _vecs_and_params("LiH")
    circuit_bp = invariant_circuit(layout).qnode()
    dev = qml.device("default.qubit", wires=layout.n_qubits)

    # Parameter-shift needs gates PennyLane can shift: the SU(2) encoding as Rot-free
    # exp(-i θ n·σ/2) = qml.RX/RY/RZ is not one gate, so compare on the couplings J,
    # written as qml.IsingXX/YY/ZZ (exp(-i J (XX+YY+ZZ)) = IsingXX(2J)·IsingYY(2J)·IsingZZ(2J),
    # the three terms commute).
    from qdyn.quantum import gates

    @qml.qnode(dev, interface="jax", diff_method="parameter-shift")
    def circuit_ps(J, cparams, vecs):
        for p, q in layout.singlets:
            qml.Hadamard(p), qml.PauliZ(p), qml.PauliX(q), qml.CNOT([p, q])
        for d in range(layout.layers):
            for q in range(layout.n_qubits):
                qml.QubitUnitary(gates.su2_encoding(vecs[0], cparams["alpha"][d, layout.alpha_index[q]]), wires=q)
            for b in range(layout.blocks):
                for p, q in layout.exchange[0].pairs:
                    qml.IsingXX(2 * J[d, b, 0], [p, q])
                    qml.IsingYY(2 * J[d, b, 0], [p, q])
                    qml.IsingZZ(2 * J[d, b, 0], [p, q])
        return qml.expval(sum(P(0) @ P(1) for P in (qml.PauliX, qml.PauliY, qml.PauliZ)))

    g_ps = jax.grad(circuit_ps)(cparams["J"], cparams, vecs)
    g_bp = jax.grad(lambda J: circuit_bp({**cparams, "J": J}, vecs))(cparams["J"])
    np.testing.assert_allclose(np.asarray(g_bp), np.asarray(g_ps), atol=1e-8)


def test_layout_is_symmetric_by_construction():
    """Every group element maps singlets, exchange orbits, α ties and the observable to
    themselves."""
    for name, (_, kw) in CASES.items():
        template = TEMPLATES[name.split("_all")[0]]
        L = build_layout(template, **kw)
        norm = lambda prs: sorted(tuple(sorted(p)) for p in prs)
        for g in L.qubit_group:
            img = lambda prs: norm((g[p], g[q]) for p, q in prs)
            assert img(L.singlets) == norm(L.singlets)
            for orbit in L.exchange:
                assert img(orbit.pairs) == norm(orbit.pairs)
            assert all(L.alpha_index[g[q]] == L.alpha_index[q] for q in range(L.n_qubits))
        for perm in template.symmetries:  # the lift of each generator reads permuted vectors
            vp = template.vector_permutation(perm)
            n_vec = len(template.vectors)
            g = [(q // n_vec) * n_vec + vp[q % n_vec] for q in range(L.n_qubits)]
            assert tuple(g) in L.qubit_group
            assert all(L.qubit_vector[g[q]] == vp[L.qubit_vector[q]] for q in range(L.n_qubits))


def test_template_validation():
    with pytest.raises(ValueError, match="unlike atoms"):
        MoleculeTemplate(symbols=("O", "H", "H"), vectors=((1, 0), (2, 0)), symmetries=((1, 0, 2),))
    with pytest.raises(ValueError, match="closed under the symmetries"):
        MoleculeTemplate(symbols=("O", "H", "H"), vectors=((1, 0),), symmetries=((0, 2, 1),))
    with pytest.raises(ValueError, match="even number of qubits"):
        build_layout(TEMPLATES["LiH"], rep=1, layers=1)


def _invariant_h2o():
    return invariant_circuit(build_layout(TEMPLATES["H2O"], rep=2, layers=2, blocks=1))


# every family (scalar and vector outputs, odd and even rings), and the inputs it reads
FAMILIES = {
    "invariant": (_invariant_h2o, (2, 3)),
    "hardware_efficient": (lambda: hardware_efficient_circuit(2, rep=2, layers=2, blocks=2), (2, 3)),
    "hardware_efficient_3q": (lambda: hardware_efficient_circuit(3, rep=1, layers=2, blocks=1), (3, 3)),
    "reupload": (lambda: reupload_circuit(4, layers=2), (2, 4)),
    "reupload_3q": (lambda: reupload_circuit(3, layers=2), (2, 3)),
    "qsf": (lambda: qsf_circuit(4, 1), (4, 3)),
    "qsf_bare": (lambda: qsf_circuit(2, 2, parity_average=False), (2, 3)),
}
# the second-order check once per circuit type (its smaller variant): the code paths are shared
SECOND_ORDER = {"invariant", "hardware_efficient_3q", "reupload_3q", "qsf_bare"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_circuit_equals_its_qnode(family):
    make, in_shape = FAMILIES[family]
    circuit = make()
    keys = jax.random.split(jax.random.PRNGKey(7), len(circuit.param_shapes) + 1)
    cparams = {k: jax.random.normal(kk, s, jnp.float64) for (k, s), kk in zip(circuit.param_shapes.items(), keys)}
    inputs = jax.random.normal(keys[-1], in_shape, jnp.float64)
    loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)))  # noqa: E731  (weights every output differently)
    # outputs and gradients of each path from one compiled program (the QNode's compile dominates)
    outputs_and_grads = lambda f: jax.jit(jax.value_and_grad(  # noqa: E731
        lambda p, x: (loss(f)(p, x), f(p, x)), argnums=(0, 1), has_aux=True))
    (_, out), g_sv = outputs_and_grads(circuit.expval)(cparams, inputs)
    (_, out_ref), g_ref = outputs_and_grads(circuit.qnode())(cparams, inputs)
    assert out.shape == circuit.out_shape
    np.testing.assert_allclose(np.asarray(out), np.asarray(out_ref), atol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g_sv), jax.tree_util.tree_leaves(g_ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-10)
    assert float(jnp.max(jnp.abs(g_sv[1]))) > 1e-3  # the inputs matter: not a trivial comparison
    # The second order a force loss needs (d/dparams of |d out/d inputs|²), checked along a
    # random direction against central differences of the same loss: both paths already agree
    # in value and gradient for all inputs, so what remains to prove is that the fast path's
    # autodiff is right to second order (compiling the QNode's grad-of-grad costs a minute).
    if family not in SECOND_ORDER:
        return
    force_loss = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(jax.grad(loss(circuit.expval), argnums=1)(p, x) ** 2)))
    h_sv = force_loss(cparams, inputs)[1]
    direction = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)), cparams)
    step = 1e-5
    shifted = lambda sign: jax.tree_util.tree_map(lambda a, d: a + sign * step * d, cparams, direction)  # noqa: E731
    fd = (force_loss(shifted(1), inputs)[0] - force_loss(shifted(-1), inputs)[0]) / (2 * step)
    analytic = sum(jnp.vdot(a, d) for a, d in zip(jax.tree_util.tree_leaves(h_sv), jax.tree_util.tree_leaves(direction)))
    np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-6, atol=1e-8)
    assert abs(float(analytic)) > 1e-3


def test_ring_has_each_pair_once():
    assert ring(1) == () and ring(2) == ((0, 1),)
    assert ring(4) == ((0, 1), (1, 2), (2, 3), (3, 0))


def _fast_path_equals_the_gates(value_and_grads, monkeypatch, switches: dict, module=None):
    """``value_and_grads() -> (value, (d/dparams, d/dinputs))`` on a fast path, then with each
    ``<module>.<switch> = off`` of ``switches`` in turn (default module: statevector), so that
    the path without it runs: equal to 1e-12, and the inputs matter (not a trivial comparison).
    The fast path is compiled once for all switches."""
    from qdyn.quantum import statevector

    fast = value_and_grads()
    assert float(jnp.max(jnp.abs(fast[1][1]))) > 1e-3
    for switch, off in switches.items():
        with monkeypatch.context() as m:
            m.setattr(module or statevector, switch, off)
            gates_path = value_and_grads()
        for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(gates_path)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)


@pytest.mark.parametrize("family", ["invariant", "hardware_efficient", "reupload_3q", "qsf", "water_dimer"])
def test_dense_couplings_equal_the_gates(family, monkeypatch):
    """Up to DENSE_MAX_QUBITS the sample-independent gates of a layer run as one matrix
    (statevector.run_layers); the gate-by-gate path larger circuits take gives the same
    values and gradients (1e-12), including the water dimer's non-matching exchange clusters."""
    if family == "water_dimer":
        layout, inputs, cparams = _vecs_and_params("water_dimer")
        make = lambda: invariant_circuit(layout)  # noqa: E731
    else:
        make, in_shape = FAMILIES[family]
        keys = jax.random.split(jax.random.PRNGKey(3), len(make().param_shapes) + 1)
        cparams = {k: jax.random.normal(kk, s, jnp.float64) for (k, s), kk in zip(make().param_shapes.items(), keys)}
        inputs = jax.random.normal(keys[-1], in_shape, jnp.float64)
    loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)))  # noqa: E731

    def value_and_grads():
        return jax.jit(jax.value_and_grad(loss(make().expval), argnums=(0, 1)))(cparams, inputs)

    _fast_path_equals_the_gates(value_and_grads, monkeypatch, {"DENSE_MAX_QUBITS": 0})


def test_loop_over_qubits_equals_the_gates(monkeypatch):
    """From statevector.LOOP_MIN_QUBITS on, the encodings and the ring of exchange orbits run in
    a loop over the qubits with the state rotated between steps (statevector.apply_cyclic); from
    CONTRACT_MIN_QUBITS on the exchanges run as contractions with their 4×4 matrices; above
    DENSE_MAX_QUBITS the backward pass recomputes each layer (REMAT_LAYERS). At 8 qubits each
    gives the values and gradients of the path without it (1e-12)."""
    from qdyn.quantum.invariant import exchange_period

    template = TEMPLATES["H2O"]
    layout = build_layout(template, rep=4, layers=2)
    assert exchange_period(layout) == (2, (((0, 1),), ((0, 3), (1, 2))))  # the exchanges loop too
    assert exchange_period(build_layout(template, rep=4, layers=2, coupling="all")) is None
    _fast_path_equals_the_gates(_water_value_and_grads(layout), monkeypatch,
                                {"LOOP_MIN_QUBITS": 99, "CONTRACT_MIN_QUBITS": 99, "REMAT_LAYERS": False})


def _water_value_and_grads(layout):
    """``value_and_grads()`` of a water layout's circuit at a rattled geometry, random parameters."""
    template = TEMPLATES["H2O"]
    R = rattle(water()[0], 0)
    vecs = jnp.asarray([R[h] - R[t] for h, t in template.vectors])
    shapes = sorted(layout.param_shapes().items())
    keys = jax.random.split(jax.random.PRNGKey(1), len(shapes))
    cparams = {k: jax.random.normal(kk, s, jnp.float64) for (k, s), kk in zip(shapes, keys)}

    def value_and_grads():
        f = invariant_circuit(layout).expval
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(cparams, vecs)

    return value_and_grads


@pytest.mark.parametrize("blocks, symmetry_breaking", [(1, False), (2, True)])
def test_window_steps_equal_the_gates(blocks, symmetry_breaking, monkeypatch):
    """From invariant.WINDOW_MIN_QUBITS on, each step of the ring of exchanges is one matrix on a
    window of qubits, the encodings of the qubits that enter the window folded in (first block
    only). Switched on at 8 qubits, values and gradients equal the gates' (1e-12); the schedule
    encodes every qubit exactly once."""
    from qdyn.quantum import invariant

    template = TEMPLATES["H2O"]
    layout = build_layout(template, rep=4, layers=2, blocks=blocks, symmetry_breaking=symmetry_breaking)
    w, encode = invariant.window_schedule(8, *invariant.exchange_period(layout))
    assert w == 4 and sorted(encode[encode < 8].tolist()) == list(range(8))
    assert (encode[-1] == 8).all()  # the last window wraps round onto qubits already encoded
    assert invariant.window_schedule(8, 2, (((0, 7),),)) is None  # too wide: the gates run
    monkeypatch.setattr(invariant, "WINDOW_MIN_QUBITS", 8)
    _fast_path_equals_the_gates(_water_value_and_grads(layout), monkeypatch, {"WINDOW_MIN_QUBITS": 99}, invariant)
