"""A minimal pure-JAX statevector executor for qdyn's circuit templates.

The state of n qubits is a complex tensor of shape (2,)*n (qubit 0 = most significant bit,
as in PennyLane). Every operation is a fixed contraction or axis permutation, so the whole
circuit traces to a handful of XLA ops per layer and batches with ``vmap``. Tests prove it
equal to the PennyLane QNodes built from the same layouts (values and gradients).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import gates

DENSE_MAX_QUBITS = 6
"""Up to this many qubits, the gates a layer's samples share run as one 2^n × 2^n matrix
(:func:`run_layers`). Measured on the H2O siVQLM, D = 6, float64 (docs/performance.md): at
4 and 6 qubits the matrix makes E+F 1.5–2× and the training gradient 2.5–6× faster; at 8 qubits
E+F is 2× slower with it (a 256 × 256 matrix is 16× the flops of the gates it replaces)."""

LOOP_MIN_QUBITS = DENSE_MAX_QUBITS + 1
"""From this many qubits, gates that repeat around the qubits (an encoding on every qubit, a ring
of exchanges) run in a loop over the qubits (:func:`apply_cyclic`), traced once instead of n
times: the program's size, and its compile time, stop growing with n (docs/performance.md)."""


CONTRACT_MIN_QUBITS = LOOP_MIN_QUBITS
"""From this many qubits, an exchange gate runs as a contraction with its 4×4 matrix (a dot)
instead of elementwise. XLA fuses a chain of elementwise gates into one loop that recomputes
every earlier gate at each amplitude it reads (an exchange reads two), 2^k reads per amplitude
after k gates; on CPU, ``jax.lax.optimization_barrier`` does not stop it. A dot is a kernel of
its own, so each gate is one pass over the state. 16 qubits, four exchanges: 3.2 ms fused,
1.3 ms as contractions; the siVQLM at 12–16 qubits: E 2.1–2.4×, E+F 1.2×, training step
2.3–2.6× faster (docs/performance.md)."""


REMAT_LAYERS = True
"""Above :data:`DENSE_MAX_QUBITS`, the backward pass recomputes each layer's gates from the layer's
input state (``jax.checkpoint``) instead of storing every gate's input. 16 qubits, batch 2:
E+F temporaries 238 → 58 MiB, training step 1684 → 734 MiB; E+F 0.8× the time at 12–16 qubits
(fewer passes over the state than writing and re-reading the stored inputs), training step
unchanged."""


def singlet_state(n_qubits: int, singlets, dtype):
    """Product of singlets (|01⟩ - |10⟩)/√2 on the given pairs (covering all qubits).

    Built from a few outer products at run time rather than embedded as a 2^n constant:
    large constants make XLA's compile time grow with the state size.
    """
    pairs = list(singlets)
    if sorted(q for p in pairs for q in p) != list(range(n_qubits)):
        raise ValueError(f"singlet pairs {pairs} must cover qubits 0..{n_qubits - 1} once")
    s = jnp.asarray([[0.0, 1.0], [-1.0, 0.0]], dtype=dtype) * float(np.sqrt(0.5))  # Python float: stays weakly typed
    state = s
    for _ in pairs[1:]:
        state = jnp.multiply.outer(state, s)
    order = [q for p in pairs for q in p]  # axis k of `state` is qubit order[k]
    return jnp.transpose(state, np.argsort(order))


def _around(state, q: int):
    """View of a (2,)*n state as [2^q, 2, 2^(n-q-1)] (a free reshape): the gate arithmetic runs
    on 3-D arrays whose last axis is long, not on n axes of length 2, which XLA's CPU backend
    loops over one element at a time (E 1.2× faster, E+F compile 2× faster at 12 qubits:
    docs/performance.md)."""
    return state.reshape(2**q, 2, 2 ** (state.ndim - q - 1))


def apply_1q(state, U, q: int):
    """Apply a 2×2 matrix to qubit q.

    Written as a broadcast product summed over the input index, not a tensordot: XLA fuses a
    chain of these into one loop, where each tensordot would be its own kernel plus a transpose
    (2-3× faster for the small states of molecular circuits). Not as slices (or a split) and a
    stack either: their transposes are concatenates and zero pads, and the second derivative a
    force-trained model takes transposes them again. 4-qubit H2O siVQLM, batch 256: E and E+F
    0.88× the time, training step unchanged, its compile 5.9-7.7 → 4.3-5.0 s; 8-16 qubits
    0.9-1.0× (docs/performance.md).
    """
    s = _around(state, q)  # [A, 2, C]
    return jnp.sum(U[None, :, :, None] * s[:, None, :, :], axis=2).reshape(state.shape)


def apply_1q_all(state, Us):
    """Apply Us[q] (shape [n, 2, 2]) to every qubit q.

    From :data:`LOOP_MIN_QUBITS` on, the gates run in a loop over the qubits (:func:`apply_cyclic`).
    """
    if state.ndim >= LOOP_MIN_QUBITS:
        return apply_cyclic(state, lambda s, U: apply_1q(s, U, 0), Us, 1)
    # unstacked once, not indexed per qubit: the transpose of Us[q] is a zero pad per qubit, which a
    # force-trained model's second derivative pads again (4-qubit training step 0.91x, 444 -> 409 kernels)
    for q, U in enumerate(jnp.unstack(Us)):
        state = apply_1q(state, U, q)
    return state


def rotate_qubits(state, shift: int):
    """Relabel the qubits cyclically, qubit q becoming qubit (q - shift) mod n: the first
    ``shift`` qubit axes moved last (one transpose of a 2-D view)."""
    return state.reshape(2**shift, -1).T.reshape(state.shape)


def apply_cyclic(state, apply_block: Callable, xs, shift: int):
    """Apply a block of gates that repeats around the qubits: step g runs
    ``apply_block(state, xs[g])`` on the qubits shifted by g·shift (mod n), for g < n / shift.

    The block is written for step 0; between steps the state is rotated by ``shift`` qubits
    (:func:`rotate_qubits`), so after all n / shift steps it is back in order. The steps run in
    ``lax.scan``: the block is traced once, not n / shift times. Two steps per iteration
    (``unroll=2``): with one, every step's output (a transpose, so not written in place) was
    copied back into the loop's carry, a second pass over the state (16 qubits: E 1.1–1.3×
    slower than the unrolled gates; 1.07× with two steps).
    """
    n = state.ndim
    if n % shift or jax.tree_util.tree_leaves(xs)[0].shape[0] != n // shift:
        raise ValueError(f"{n} qubits need n / shift = {n // shift} steps of shift {shift}")

    def step(state, x):
        return rotate_qubits(apply_block(state, x), shift), None

    state, _ = jax.lax.scan(step, state, xs, unroll=2)
    return state


def swap_qubits(state, p: int, q: int):
    """SWAP_{pq} ψ: the two qubit axes exchanged, done on a 5-D view with long inner axes."""
    p, q = min(p, q), max(p, q)
    n = state.ndim
    s = state.reshape(2**p, 2, 2 ** (q - p - 1), 2, 2 ** (n - q - 1))
    return jnp.swapaxes(s, 1, 3).reshape(state.shape)


def apply_exchange_pair(state, J, p: int, q: int):
    """exp(-i J (XX+YY+ZZ)) on (p, q), up to the global phase e^{iJ}: cos2J ψ - i sin2J SWAPψ.

    From :data:`CONTRACT_MIN_QUBITS` on, as a contraction of the pair's axes with the 4×4 gate
    (:func:`_contract_pair`) rather than elementwise."""
    if state.ndim >= CONTRACT_MIN_QUBITS:
        gate = jnp.cos(2 * J) * np.eye(4) - 1j * jnp.sin(2 * J) * gates.SWAP
        return _contract_pair(state, gate.astype(state.dtype), min(p, q), max(p, q))  # symmetric in p, q
    return jnp.cos(2 * J) * state - 1j * jnp.sin(2 * J) * swap_qubits(state, p, q)


def _contract_pair(state, gate, p: int, q: int):
    """A 4×4 gate on qubits p < q as one contraction over the two qubit axes of a 5-D view (a
    dot, plus the transposes XLA adds around it)."""
    n = state.ndim
    view = state.reshape(2**p, 2, 2 ** (q - p - 1), 2, 2 ** (n - q - 1))
    return jnp.einsum("ijkl,akblc->aibjc", gate.reshape(2, 2, 2, 2), view).reshape(state.shape)


def apply_dense(state, M, qubits):
    """Apply a 2^k × 2^k matrix on the listed qubits (in that order)."""
    n = state.ndim
    k = len(qubits)
    rest = [q for q in range(n) if q not in qubits]
    perm = list(qubits) + rest
    psi = jnp.transpose(state, perm).reshape(2**k, -1)
    psi = (M @ psi).reshape((2,) * n)
    return jnp.transpose(psi, np.argsort(perm))


def block_matrix(apply_block: Callable, n_qubits: int, dtype):
    """The 2^n × 2^n matrix of a gate sequence ``apply_block(state) -> state``: column j is the
    sequence applied to basis state j (the sequence run on all 2^n basis states at once)."""
    dim = 2**n_qubits
    basis = jnp.eye(dim, dtype=dtype).reshape((dim,) + (2,) * n_qubits)
    return jax.vmap(apply_block)(basis).reshape(dim, dim).T


def apply_first(state, M):
    """Apply a 2^k × 2^k matrix M to the first k qubits: one matrix product with the state viewed as
    [2^k, 2^(n-k)]. Under ``vmap`` with a per-sample M it is a batched product whose output is
    already in the state's order (no transposes around it)."""
    return (M @ state.reshape(M.shape[-1], -1)).reshape(state.shape)


def apply_matrix(state, M):
    """Apply a 2^n × 2^n matrix to the whole state."""
    return (M @ state.reshape(-1)).reshape(state.shape)


def run_layers(encode: Callable, shared: Callable, state, xs, unroll: Optional[int] = None):
    """Run a circuit's layers: per layer ``encode(state, x)`` (the gates that read the sample),
    then ``shared(state, x)`` (the gates every sample shares: trainable couplings, CNOTs), with
    ``x`` the layer's slice of ``xs`` (a pytree with the layers on the leading axis).

    Up to :data:`DENSE_MAX_QUBITS` the shared gates of every layer are first multiplied out into
    one matrix per layer (:func:`block_matrix`), all layers in one batched computation before the
    layer loop. Under ``vmap`` over samples those matrices are built once per call and applied as
    one matrix product over the batch (a GEMM) in the forward and backward pass, where the gates
    themselves would be a chain of small elementwise kernels per sample. Larger states run the
    gates.

    ``unroll``: layers per ``lax.scan`` iteration. By default a circuit of up to
    :data:`DENSE_MAX_QUBITS` qubits is unrolled whole: its layers are a few kernels each, and the
    loop's own cost (slicing each layer's parameters, stacking and re-reading the backward pass's
    residuals) was 15–20 % of the training step (H2O siVQLM, 4 qubits, D = 6,
    docs/performance.md), at about the same compile time. Larger circuits keep one layer per
    iteration, so that compile time does not grow with depth, and recompute a layer's gates in
    the backward pass rather than store each gate's input state.
    """
    n = state.ndim
    dense = n <= DENSE_MAX_QUBITS
    if unroll is None:
        unroll = True if dense else 1
    if dense:
        matrices = jax.vmap(lambda x: block_matrix(lambda psi: shared(psi, x), n, state.dtype))(xs)

        def layer(state, x_and_matrix):
            x, M = x_and_matrix
            return apply_matrix(encode(state, x), M), None

        state, _ = jax.lax.scan(layer, state, (xs, matrices), unroll=unroll)
        return state

    def gate_layer(state, x):
        return shared(encode(state, x), x), None

    if REMAT_LAYERS:
        gate_layer = jax.checkpoint(gate_layer)

    state, _ = jax.lax.scan(gate_layer, state, xs, unroll=unroll)
    return state


def apply_cnot(state, c: int, t: int):
    """CNOT with control c and target t: the target flipped where the control is 1 (on a 5-D
    view that isolates the two qubit axes)."""
    lo, hi = min(c, t), max(c, t)
    s = state.reshape(2**lo, 2, 2 ** (hi - lo - 1), 2, 2 ** (state.ndim - hi - 1))
    c_axis, t_axis = (1, 3) if c < t else (3, 1)
    s0, s1 = (jnp.squeeze(h, c_axis) for h in jnp.split(s, 2, axis=c_axis))  # split: see apply_1q
    s1 = jnp.flip(s1, axis=t_axis - 1 if t_axis > c_axis else t_axis)
    return jnp.stack([s0, s1], axis=c_axis).reshape(state.shape)


def z_signs(n_qubits: int) -> np.ndarray:
    """z[q, b...] = +1/-1 eigenvalue of Z_q on each basis state, shape [n, (2,)*n]."""
    grids = np.meshgrid(*([np.array([1.0, -1.0])] * n_qubits), indexing="ij")
    return np.stack(grids)


def expect_heisenberg(state, p: int, q: int):
    """⟨ψ|(XX+YY+ZZ)_{pq}|ψ⟩ = 2 Re⟨ψ|SWAP_{pq} ψ⟩ - ⟨ψ|ψ⟩."""
    swapped = swap_qubits(state, p, q)
    norm = jnp.sum(jnp.abs(state) ** 2)
    return 2.0 * jnp.real(jnp.vdot(state, swapped)) - norm
