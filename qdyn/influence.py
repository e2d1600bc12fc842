"""Influence functions: which training frames drive a prediction.

For a model trained to a minimum θ* of the training loss ``L(θ) = (1/n) Σ_z L_z(θ)`` (the same
energy + force loss training used, :func:`qdyn.train.losses.make_loss_fn`, one frame at a
time), the influence of removing training frame z on a query q(θ) (an energy, a force
component, or a whole frame's loss) is, to first order (Koh and Liang, ICML 2017)::

    I(z) = ∇q(θ*)ᵀ (H + λ I)⁻¹ ∇L_z(θ*) / n   ≈   q(θ*_{-z}) - q(θ*)

**Sign convention**: ``I(z)`` is the predicted *change of q when z is removed* and the model
retrained. For ``q`` = a frame's loss, ``I(z) > 0`` means removing z would raise that loss:
z helps that frame (a proponent); ``I(z) < 0``: z hurts it (an opponent).

``H`` is the Hessian of the mean training loss with respect to the trainable parameters
(groups FIXED, the descriptor statistics, and any group training kept frozen are left out of
θ) and ``λ`` the damping. Three ways to apply ``(H + λ I)⁻¹``:

* ``exact``: the full Hessian (forward-over-reverse, summed over chunks of frames) and its
  eigendecomposition; for few parameters (a siVQLM has 10–100).
* ``cg``: conjugate gradients on Hessian-vector products (``jvp`` of ``grad``), never
  forming H; for thousands of parameters.
* ``arnoldi``: the Arnoldi iteration of Schioppa et al. (AAAI 2022) on Hessian-vector
  products from a random start (query independent): the top ``rank`` eigenpairs of H by
  magnitude, and ``(H + λI)⁻¹`` inverted on their span only. With ``rank`` = every parameter
  it equals ``exact``; with fewer it drops the low-curvature directions.

**Damping** ``λ`` (units of the loss per parameter²) regularises the inverse: directions in
which the loss is flat (for LiH the two species shifts only enter as their sum; a model with
unused parameters) have eigenvalue ~0 and would get an unbounded response; with λ their
response is at most 1/λ. λ ≪ the eigenvalues that matter leaves the influence unchanged;
λ comparable to them shrinks every influence towards ``∇qᵀ∇L_z/(nλ)``, a gradient
similarity. The default (``damping=None``) is ``1e-4 × the largest eigenvalue``: in the
validation (``benchmarks/influence_validation.py``, docs/influence.md) the rank correlation
with leave-one-out retraining, averaged over its three queries, is 0.90 there, 0.92 at 1e-6
and 0.73 at the former default 1e-3; 1e-4 keeps CG's condition number at most 1e4. **Non-convexity**: at a point that is not a minimum (training
stopped early) H has negative eigenvalues; ``H + λI`` must stay positive definite for the
inverse to mean "retrain to the nearby minimum", so the default λ adds ``|most negative
eigenvalue|``, and an explicit λ that leaves ``H + λI`` indefinite is refused with the
eigenvalue named. Influence at such a point is an extrapolation: train to convergence first.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax, numpy as np
    >>> from qdyn.data import load_shipped
    >>> from qdyn.models import build_model
    >>> from qdyn.train.losses import make_loss_fn
    >>> from qdyn import influence as inf
    >>> ds = load_shipped("LiH").subset(np.arange(0, 200, 25))
    >>> # any model family; a small BP network compiles fastest (H is P x P, third derivatives)
    >>> model = build_model({"family": "bpnn", "hidden": [4], "n_radial": 3, "zetas": [1.0]}, species=(1, 3))
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> obj = inf.make_objective(model, params, ds, make_loss_fn(model.apply, sigma_E=1.0, sigma_F=1.0))
    >>> g = inf.query_gradient(obj, inf.parse_target("energy"), *ds.to_system(0))
    >>> res = inf.influence(obj, g, method="exact")
    >>> res.scores.shape, res.method
    ((8,), 'exact')
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .models.base import FIXED, EnergyModel, energy_and_forces_fn
from .train.batches import Batch, make_batch

METHODS = ("exact", "cg", "arnoldi")
DEFAULT_RELATIVE_DAMPING = 1e-4  # × λ_max; chosen by the damping sweep of influence_validation.py
DEFAULT_CHUNK = 16


class InfluenceError(ValueError):
    """An influence computation that cannot give a meaningful answer (one clear line)."""


# ----------------------------------------------------------------------------- the objective
class Objective(NamedTuple):
    """The training loss as a function of the flat trainable parameters θ [P].

    Attributes:
        theta: [P] trainable parameters at the trained point.
        unravel: ``theta -> params`` (the full parameter dict, excluded groups as trained).
        frame_loss: ``(theta, frame) -> scalar``: the training loss of one frame (a
            one-frame :class:`~qdyn.train.batches.Batch`).
        frames: the training frames as a Batch whose arrays are ``[n_chunks, chunk, 1, ...]``.
        weights: [n_chunks, chunk] a training frame's weight in the loss (1, or the run's
            energy-based frame weights, mean 1: :mod:`qdyn.train.weighting`), 0 for padding.
        n_frames: training frames n.
        model: the model (queries evaluate its energy).
        excluded: parameter keys left out of θ.
    """

    theta: jnp.ndarray
    unravel: Callable
    frame_loss: Callable
    frames: Batch
    weights: jnp.ndarray
    n_frames: int
    model: EnergyModel
    excluded: tuple

    @property
    def n_params(self) -> int:
        return int(self.theta.size)


def make_objective(model: EnergyModel, params: dict, train_ds, loss_fn: Callable, *,
                   loss_weights: Sequence[float] = (1.0, 1.0, 0.0), exclude_groups: Sequence[str] = (FIXED,),
                   chunk: int = DEFAULT_CHUNK, frame_weights: Optional[np.ndarray] = None) -> Objective:
    """The training objective of ``model`` at ``params`` on the frames of ``train_ds``.

    Args:
        model: the trained model.
        params: its parameters (a plain dict, as training returns it).
        train_ds: the training frames (a :class:`qdyn.data.Dataset` with E and F).
        loss_fn: the batch loss training used, ``loss(params, batch, w_E, w_F, w_net) ->
            (loss, aux)`` (:func:`qdyn.train.losses.make_loss_fn`); evaluated on one frame
            at a time. For molecules of one size the mean of these per-frame losses is the
            full-batch training loss exactly; with mixed sizes, force terms are averaged per
            frame rather than per atom.
        loss_weights: (w_E, w_F, w_net) at the end of training.
        exclude_groups: parameter groups (``EnergyModel.groups``) that are not θ: FIXED
            always (descriptor statistics), plus any group training kept frozen.
        chunk: frames per compiled chunk (memory stays bounded by it).
        frame_weights: [n] the weight of each frame in the training loss, mean 1 (the run's
            ``loss.frame_weight_scale_eV``: :func:`qdyn.train.weighting.frame_weights`); None: 1.
    """
    train_ds.require("E", "F")
    excluded = tuple(k for k in params if model.groups.get(k) in set(exclude_groups))
    trainable = {k: v for k, v in params.items() if k not in excluded}
    fixed = {k: params[k] for k in excluded}
    if not trainable:
        raise InfluenceError(f"{model.name}: no trainable parameters outside groups {sorted(set(exclude_groups))}")
    theta, unravel_trainable = ravel_pytree(trainable)

    def unravel(t):
        return {**unravel_trainable(t), **fixed}

    w_E, w_F, w_net = (jnp.asarray(float(w)) for w in loss_weights)

    def frame_loss(t, frame: Batch):
        return loss_fn(unravel(t), frame, w_E, w_F, w_net)[0]

    n = train_ds.n_frames
    chunk = max(1, min(chunk, n))
    n_chunks = -(-n // chunk)
    batch = make_batch(train_ds, np.arange(n), n_chunks * chunk, states=model.is_multistate)
    # every slot is a one-frame batch of weight 1 (padding slots repeat frame 0: a finite loss
    # that the outer weight 0 removes; a batch weight of 0 would make the loss 0/0)
    batch = batch._replace(weight=jnp.ones_like(batch.weight))
    frames = jax.tree_util.tree_map(lambda a: a.reshape((n_chunks, chunk, 1) + a.shape[1:]), batch)
    per_frame = np.ones(n) if frame_weights is None else np.asarray(frame_weights, dtype=float)
    weights = jnp.asarray(np.pad(per_frame, (0, n_chunks * chunk - n)), dtype=theta.dtype).reshape(n_chunks, chunk)
    return Objective(theta=theta, unravel=unravel, frame_loss=frame_loss, frames=frames, weights=weights,
                     n_frames=n, model=model, excluded=excluded)


def _chunk_loss_sum(obj: Objective, theta, frames, weights):
    """Σ_z w_z L_z(θ) over one chunk of frames."""
    return jnp.sum(weights * jax.vmap(obj.frame_loss, in_axes=(None, 0))(theta, frames))


def _chunks(obj: Objective):
    for c in range(obj.weights.shape[0]):
        yield jax.tree_util.tree_map(lambda a: a[c], obj.frames), obj.weights[c]


def training_loss(obj: Objective, theta=None, frame_weights=None) -> jnp.ndarray:
    """Weighted mean training loss ``Σ_z w_z L_z(θ) / Σ_z w_z``; ``frame_weights`` [n]
    (default all 1; a 0 removes a frame: the leave-one-out objective). Jittable."""
    theta = obj.theta if theta is None else theta
    w = obj.weights
    if frame_weights is not None:
        w = w * jnp.pad(jnp.asarray(frame_weights, w.dtype), (0, w.size - obj.n_frames)).reshape(w.shape)

    def body(total, xs):
        frames, wc = xs
        return total + _chunk_loss_sum(obj, theta, frames, wc), None

    total, _ = jax.lax.scan(body, jnp.zeros((), obj.theta.dtype), (obj.frames, w))
    return total / jnp.sum(w)


# ----------------------------------------------------------------------------- curvature
def hessian(obj: Objective) -> np.ndarray:
    """The exact Hessian [P, P] of the mean training loss (forward-over-reverse, one compiled
    chunk Hessian summed over chunks, so memory is one chunk's)."""
    fn = jax.jit(jax.hessian(lambda t, f, w: _chunk_loss_sum(obj, t, f, w)))
    H = sum(np.asarray(fn(obj.theta, f, w)) for f, w in _chunks(obj)) / obj.n_frames
    return 0.5 * (H + H.T)


def hvp_fn(obj: Objective) -> Callable:
    """``v [P] -> H v`` at ``obj.theta``: ``jvp`` of ``grad`` of the mean training loss,
    scanned over chunks of frames; H is never formed. The compiled program takes θ and the
    frames as arguments, so it is shared by every objective with the same loss."""
    core = _jitted_hvp(obj.frame_loss)
    return lambda v: core(obj.theta, obj.frames, obj.weights, jnp.asarray(v))


@functools.lru_cache(maxsize=8)
def _jitted_hvp(frame_loss: Callable) -> Callable:
    return jax.jit(_hvp_program(frame_loss))


@functools.lru_cache(maxsize=8)
def _hvp_program(frame_loss: Callable) -> Callable:
    """``(theta, frames, weights, v) -> H v`` (not jitted; see :func:`hvp_fn`)."""

    def chunk_loss(t, frames, w):
        return jnp.sum(w * jax.vmap(frame_loss, in_axes=(None, 0))(t, frames))

    grad = jax.grad(chunk_loss)

    def hvp(theta, frames, weights, v):
        def body(acc, xs):
            f, w = xs
            return acc + jax.jvp(lambda t: grad(t, f, w), (theta,), (v,))[1], None

        acc, _ = jax.lax.scan(body, jnp.zeros_like(theta), (frames, weights))
        return acc / jnp.sum(weights)

    return hvp


def frame_gradients(obj: Objective) -> np.ndarray:
    """Per-frame loss gradients ∇L_z [n, P] (``vmap`` of ``grad`` over a chunk, jitted)."""
    fn = jax.jit(jax.vmap(jax.grad(obj.frame_loss), in_axes=(None, 0)))
    G = np.concatenate([np.asarray(fn(obj.theta, f)) for f, _ in _chunks(obj)])
    return G[: obj.n_frames]


# ----------------------------------------------------------------------------- queries
class Target(NamedTuple):
    """What the query is: ``energy``, ``force`` (atom, component) or ``loss`` of a frame."""

    kind: str
    atom: int = 0
    component: int = 0

    def __str__(self):
        return f"force:{self.atom}:{'xyz'[self.component]}" if self.kind == "force" else self.kind


def parse_target(text: str) -> Target:
    """``energy`` | ``loss`` | ``force:ATOM:COMP`` (COMP x, y, z or 0–2) -> :class:`Target`."""
    parts = text.strip().lower().split(":")
    if parts == ["energy"] or parts == ["loss"]:
        return Target(parts[0])
    if len(parts) == 3 and parts[0] == "force":
        comp = {"x": 0, "y": 1, "z": 2, "0": 0, "1": 1, "2": 2}.get(parts[2])
        if parts[1].isdigit() and comp is not None:
            return Target("force", int(parts[1]), comp)
    raise InfluenceError(f"target {text!r}: expected energy, loss or force:ATOM:COMP (COMP x, y or z)")


def query_function(obj: Objective, target: Target, R, system, *, E=None, F=None) -> Callable:
    """``theta -> q`` for one frame (R [A, 3] Å, its System); ``loss`` needs its labels E
    [eV] and F [A, 3] eV/Å, and uses the training loss of that frame."""
    R = jnp.asarray(R)
    if target.kind == "energy":
        return lambda t: obj.model.apply(obj.unravel(t), R, system)
    if target.kind == "force":
        if not 0 <= target.atom < R.shape[0]:
            raise InfluenceError(f"target {target}: the frame has {R.shape[0]} atoms")
        ef = energy_and_forces_fn(obj.model.apply)
        return lambda t: ef(obj.unravel(t), R, system)[1][target.atom, target.component]
    if target.kind == "loss":
        if E is None or F is None:
            raise InfluenceError("target loss: the query frame needs energy and force labels")
        from .data import Dataset

        one = Dataset(R=np.asarray(R)[None], Z=np.asarray(system.species)[None], E=np.asarray([E], float),
                      F=np.asarray(F)[None], cell=None if system.box is None else np.asarray(system.box)[None],
                      pbc=None if system.box is None else np.ones((1, 3), bool))
        frame = make_batch(one, np.arange(1), 1, states=False)
        return lambda t: obj.frame_loss(t, frame)
    raise InfluenceError(f"unknown target kind {target.kind!r}")


def query_gradient(obj: Objective, target: Target, R, system, *, E=None, F=None) -> np.ndarray:
    """∇_θ q [P] of a query (see :func:`query_function`)."""
    return np.asarray(jax.jit(jax.grad(query_function(obj, target, R, system, E=E, F=F)))(obj.theta))


# ----------------------------------------------------------------------------- solvers
class Curvature(NamedTuple):
    """Eigenpairs of H (all of them, or a Krylov approximation)."""

    eigenvalues: np.ndarray  # [k] ascending
    eigenvectors: np.ndarray  # [P, k]
    exact: bool


def exact_curvature(obj: Objective) -> Curvature:
    e, V = np.linalg.eigh(hessian(obj))
    return Curvature(e, V, True)


def arnoldi_curvature(hvp: Callable, n_params: int, *, n_iter: int, seed: int = 0) -> Curvature:
    """Ritz pairs of H from ``n_iter`` Arnoldi steps (Schioppa et al. 2022) from a random
    start, with full re-orthogonalisation (twice, so the basis stays orthonormal in floating
    point). H is symmetric, so the Hessenberg matrix is tridiagonal (Lanczos); it is
    symmetrised before its eigendecomposition. Stops early on an invariant subspace."""
    n_iter = min(n_iter, n_params)
    q = np.random.default_rng(seed).normal(size=n_params)
    Q = [q / np.linalg.norm(q)]
    T = np.zeros((n_iter + 1, n_iter))
    for k in range(n_iter):
        w = np.asarray(hvp(jnp.asarray(Q[k])))
        for _ in range(2):
            B = np.stack(Q)
            c = B @ w
            w = w - B.T @ c
            T[: k + 1, k] += c
        T[k + 1, k] = np.linalg.norm(w)
        if k + 1 == n_iter or T[k + 1, k] <= 1e-12 * max(np.abs(T[: k + 1, : k + 1]).max(), 1e-300):
            n_iter = k + 1
            break
        Q.append(w / T[k + 1, k])
    Tk = T[:n_iter, :n_iter]
    e, U = np.linalg.eigh(0.5 * (Tk + Tk.T))
    return Curvature(e, np.stack(Q[:n_iter]).T @ U, n_iter == n_params)


def auto_damping(curv: Curvature, relative: float = DEFAULT_RELATIVE_DAMPING) -> float:
    """``relative × largest eigenvalue``, plus ``|most negative eigenvalue|`` where H is not
    positive semi-definite (so H + λI keeps that margin)."""
    e_max, e_min = float(np.max(curv.eigenvalues)), float(np.min(curv.eigenvalues))
    return relative * max(e_max, 0.0) + max(0.0, -e_min) or relative


def _check_definite(curv: Curvature, damping: float) -> None:
    e_min = float(np.min(curv.eigenvalues))
    if e_min + damping <= 0:
        raise InfluenceError(
            f"damping {damping:.3g} leaves H + λI indefinite: the Hessian has eigenvalue {e_min:.3g} (the parameters "
            f"are not at a minimum of the training loss); train to convergence or use damping > {-e_min:.3g}")


def solve_eigen(curv: Curvature, b: np.ndarray, damping: float, *, rank: Optional[int] = None) -> np.ndarray:
    """``(H + λI)⁻¹ b`` on the span of the ``rank`` eigenvectors of largest |eigenvalue|
    (all of them by default)."""
    e, V = curv.eigenvalues, curv.eigenvectors
    if rank is not None and rank < e.size:
        keep = np.sort(np.argsort(-np.abs(e))[:rank])
        e, V = e[keep], V[:, keep]
    return V @ ((V.T @ b) / (e + damping))


def solve_cg(obj: Objective, b: np.ndarray, damping: float, *, tol: float = 1e-10,
             maxiter: Optional[int] = None) -> tuple[np.ndarray, float]:
    """``(H + λI)⁻¹ b`` by conjugate gradients (``jax.scipy.sparse.linalg.cg``) on
    Hessian-vector products; returns (solution, relative residual). One compiled program
    per loss serves every θ, right-hand side and damping."""
    solve = _cg_program(obj.frame_loss, tol, maxiter or 10 * np.size(b))
    x, residual = solve(obj.theta, obj.frames, obj.weights, jnp.asarray(b), jnp.asarray(damping))
    return np.asarray(x), float(residual)


@functools.lru_cache(maxsize=8)
def _cg_program(frame_loss: Callable, tol: float, maxiter: int) -> Callable:
    hvp = _hvp_program(frame_loss)

    @jax.jit
    def solve(theta, frames, weights, b, damping):
        def op(v):
            return hvp(theta, frames, weights, v) + damping * v

        x, _ = jax.scipy.sparse.linalg.cg(op, b, tol=tol, maxiter=maxiter)
        return x, jnp.linalg.norm(op(x) - b) / jnp.maximum(jnp.linalg.norm(b), 1e-300)

    return solve


# ----------------------------------------------------------------------------- influence
class Influence(NamedTuple):
    """Influence of every training frame on one query.

    Attributes:
        scores: [n] predicted change of q when frame z is removed and the model retrained
            (units of q: eV, eV/Å, or loss).
        inverse_hvp: [P] ``(H + λI)⁻¹ ∇q`` (reusable for any set of frames).
        method: exact | cg | arnoldi.
        damping: λ used.
        eigenvalue_max, eigenvalue_min: extremes of H's spectrum (exact, or Ritz estimates).
        residual: relative residual of the linear solve (cg), else None.
    """

    scores: np.ndarray
    inverse_hvp: np.ndarray
    method: str
    damping: float
    eigenvalue_max: float
    eigenvalue_min: float
    residual: Optional[float] = None

    def top(self, k: int, *, by: str = "abs") -> np.ndarray:
        """Indices (into the training frames) of the k largest |scores| (``abs``), most
        positive (``positive``: removing them raises q most) or most negative (``negative``)."""
        key = {"abs": -np.abs(self.scores), "positive": -self.scores, "negative": self.scores}[by]
        return np.argsort(key, kind="stable")[:k]


def influence(obj: Objective, query_grad, *, method: str = "exact", damping: Optional[float] = None,
              relative_damping: float = DEFAULT_RELATIVE_DAMPING, cg_tol: float = 1e-10,
              arnoldi_iter: Optional[int] = None, arnoldi_rank: Optional[int] = None, seed: int = 0,
              curvature: Optional[Curvature] = None, frame_grads: Optional[np.ndarray] = None) -> Influence:
    """Influence ``I(z) = w_z ∇qᵀ (H + λI)⁻¹ ∇L_z / n`` of every training frame on a query
    (w_z the frame's weight in the loss, 1 unless the run weighted frames).

    Args:
        obj: the training objective (:func:`make_objective`).
        query_grad: ∇_θ q [P] (:func:`query_gradient`).
        method: ``exact`` (Hessian, eigendecomposition), ``cg`` (conjugate gradients on
            Hessian-vector products) or ``arnoldi`` (top eigenpairs from Arnoldi).
        damping: λ; None: ``relative_damping × largest eigenvalue`` (+ |negative
            eigenvalue| where H is indefinite; see the module docstring).
        cg_tol: relative tolerance of CG.
        arnoldi_iter: Arnoldi steps (default min(P, 200)); for ``cg`` the spectrum's extremes
            come from min(P, 30) steps.
        arnoldi_rank: eigenpairs kept by ``arnoldi`` (default all the iteration found).
        curvature: a precomputed :class:`Curvature` to reuse across queries (exact or Arnoldi).
        frame_grads: precomputed :func:`frame_gradients` [n, P] to reuse across queries.

    Raises:
        InfluenceError: unknown method, or an explicit damping that leaves H + λI indefinite.
    """
    if method not in METHODS:
        raise InfluenceError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    b = np.asarray(query_grad, dtype=np.asarray(obj.theta).dtype)
    P = obj.n_params
    if curvature is None:
        if method == "exact":
            curvature = exact_curvature(obj)
        else:
            curvature = arnoldi_curvature(hvp_fn(obj), P, n_iter=arnoldi_iter or min(P, 200 if method == "arnoldi" else 30),
                                          seed=seed)
    lam = auto_damping(curvature, relative_damping) if damping is None else float(damping)
    _check_definite(curvature, lam)
    residual = None
    if method == "cg":
        s, residual = solve_cg(obj, b, lam, tol=cg_tol)
    else:
        s = solve_eigen(curvature, b, lam, rank=arnoldi_rank if method == "arnoldi" else None)
    G = frame_gradients(obj) if frame_grads is None else frame_grads
    w = np.asarray(obj.weights).reshape(-1)[: obj.n_frames]  # removing frame z removes w_z L_z / n
    return Influence(scores=(G @ s) * w / obj.n_frames, inverse_hvp=s, method=method, damping=lam,
                     eigenvalue_max=float(np.max(curvature.eigenvalues)),
                     eigenvalue_min=float(np.min(curvature.eigenvalues)), residual=residual)


# ----------------------------------------------------------------------------- from a run
class RunObjective(NamedTuple):
    """A finished run's training objective and what produced it."""

    objective: Objective
    params: dict
    train_ds: object
    train_indices: np.ndarray  # [n] frame index of each training frame in the run's dataset
    config: object  # the run's TrainConfig


class _FrameIndices:
    """The frame indices 0..n-1 dressed as a dataset, so the trainer's own split function
    returns which frames it put in each split."""

    def __init__(self, n: int):
        self.idx = np.arange(n)
        self.n_frames = n

    def require(self, *names):
        pass

    def subset(self, idx):
        return self.idx[np.asarray(idx)]


def objective_of_run(run_dir: str | Path, *, data=None, chunk: int = DEFAULT_CHUNK) -> RunObjective:
    """The training objective of a finished run: its config (``config.yaml``), the trainer's
    own split of its data (the frames it trained on), its loss with the data scales and the
    loss weights of its last epoch, its trained parameters; FIXED and frozen groups
    excluded from θ.

    Args:
        run_dir: a finished ``qdyn train`` run directory.
        data: the full dataset the run was trained on, when its config cannot reload it (a
            Dataset passed to ``train()`` in memory); else loaded from the config.
    """
    import yaml

    from .train.config import parse_config
    from .train.losses import build_loss, loss_weights
    from .train.weighting import frame_weights, weighting_of
    from .train.data import load_data, split_data
    from .train.trainer import load_run

    run_dir = Path(run_dir)
    model, params, _ = load_run(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise InfluenceError(f"{run_dir}: no config.yaml: the training frames of this run are unknown")
    cfg = parse_config(yaml.safe_load(cfg_path.read_text()), source=str(cfg_path))
    if data is None:
        path = cfg.data.path
        if isinstance(path, str) and path.startswith("<"):
            raise InfluenceError(f"{run_dir} was trained on a dataset passed in memory ({path}); "
                                 "give the training data explicitly")
        data = load_data(cfg.data)
    train_ds, _, _ = split_data(data, cfg.data)
    train_idx, _, _ = split_data(_FrameIndices(data.n_frames), cfg.data)
    species = sorted({int(z) for z in np.unique(train_ds.Z) if z > 0})
    loss_fn = build_loss(cfg, model, train_ds, species)
    weights = [float(w) for w in loss_weights(cfg, cfg.epochs - 1)]
    obj = make_objective(model, params, train_ds, loss_fn, loss_weights=weights,
                         exclude_groups=(FIXED, *cfg.optim.frozen), chunk=chunk,
                         frame_weights=frame_weights(weighting_of(cfg, train_ds), train_ds))
    return RunObjective(obj, params, train_ds, np.asarray(train_idx), cfg)


# ----------------------------------------------------------------------------- retraining
def make_minimizer(obj: Objective, *, max_iter: int = 1000, gtol: float = 1e-9) -> Callable:
    """``run(theta0 [P], frame_weights [n]) -> (theta, iterations, gradient norm)``: full-batch
    L-BFGS (optax, zoom line search) on the weighted training objective, jitted once.

    Influence functions assume θ is a minimum; this polishes a trained θ to one, and
    retrains with a frame removed (``frame_weights`` 0 there) warm-started from it — the
    leave-one-out retraining the influence predicts.
    """
    import optax

    def run(theta0, frame_weights):
        def f(t):
            return training_loss(obj, t, frame_weights)

        opt = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(f)

        def step(carry):
            t, state, _, it = carry
            value, g = value_and_grad(t, state=state)
            updates, state = opt.update(g, state, t, value=value, grad=g, value_fn=f)
            return optax.apply_updates(t, updates), state, jnp.linalg.norm(g), it + 1

        def going(carry):
            _, _, gnorm, it = carry
            return (it < max_iter) & (gnorm > gtol)

        init = (theta0, opt.init(theta0), jnp.asarray(jnp.inf, theta0.dtype), jnp.asarray(0))
        t, _, _, it = jax.lax.while_loop(going, step, init)
        return t, it, jnp.linalg.norm(jax.grad(f)(t))

    return jax.jit(run)
