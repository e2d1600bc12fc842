"""Adapters from a model's ``apply(params, R, system, neighbor=None)`` to the two dynamics
signatures, the only places where they are made.

* MD (JAX-MD): ``energy_fn(R, *, params, system, neighbor=None) -> E`` [eV]; JAX-MD
  forwards call-time keyword arguments of its step functions to the energy, so params,
  system and neighbour list are arguments of the compiled block, not constants in it.
* Surface hopping: ``W_fn(params, R) -> W [n_states, n_states]`` [eV], the diabatic matrix
  of a multistate model for one fixed :class:`~qdyn.system.System`.

Compiled MD and FSSH blocks are cached on the function object: ``model_energy_fn`` is
cached on ``apply``; build a ``diabatic_fn`` once per (model, system) and reuse it.
"""

from __future__ import annotations

import functools
from typing import Callable

from ..validation import QdynInputError


@functools.lru_cache(maxsize=64)
def model_energy_fn(apply: Callable) -> Callable:
    """Adapt an :class:`~qdyn.models.base.EnergyModel` ``apply`` to the MD signature.

    Every model's ``apply`` takes ``(params, R, system, neighbor=None)``; dense models
    ignore the list (they see every atom), neighbour-list models (hybrid power spectrum)
    use it.

    Args:
        apply: ``apply(params, R [n, 3] Å, system, neighbor=None) -> E`` [eV].

    Returns:
        ``energy_fn(R [n, 3] Å, *, params, system, neighbor=None) -> E`` [eV].

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax
        >>> from qdyn.models import bpnn
        >>> from qdyn.structures import water
        >>> model = bpnn.build(species=(1, 8), hidden=(8,))
        >>> params = model.init(jax.random.PRNGKey(0))
        >>> R, system = water()
        >>> energy_fn = model_energy_fn(model.apply)
        >>> bool(energy_fn(R, params=params, system=system) == model.apply(params, R, system))
        True
    """

    def energy_fn(R, *, params, system, neighbor=None):
        return apply(params, R, system, neighbor)

    return energy_fn


def diabatic_fn(model, system) -> Callable:
    """``W_fn(params, R [A, 3] Å) -> W [n, n]`` eV of a multistate model for one molecule.

    Args:
        model: a multistate model (it has ``model.diabatic(params, R, system)``).
        system: the :class:`~qdyn.system.System` the positions belong to.

    Raises:
        QdynInputError: the model has no diabatic head (not a multistate model).

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax, numpy as np
        >>> from qdyn.models import multistate
        >>> from qdyn.system import System
        >>> model = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", hidden=(8,))
        >>> params = model.init(jax.random.PRNGKey(0))
        >>> system = System.create(["Ca", "H", "H"])
        >>> W_fn = diabatic_fn(model, system)
        >>> W_fn(params, np.array([[0.0, 0, 0], [2.05, 0, 0], [-2.0, 0.4, 0]])).shape
        (2, 2)
    """
    if getattr(model, "diabatic", None) is None:
        raise QdynInputError(f"{getattr(model, 'name', model)!r} is not a multistate model (no diabatic matrix); "
                             "surface hopping needs a model trained with model.family = multistate")

    def W_fn(params, R):
        return model.diabatic(params, R, system)

    return W_fn


def model_neighbor_fn(model, params, R, system, *, skin: float = 0.5, required: bool = False):
    """A JAX-MD neighbour list for ``model`` in a periodic ``system``, or None where the
    model does not read one. Checked once on the host, with the model's own params:

    * the model *uses* the list: with every slot empty its energy differs from all-pairs
      (a dense model, which ignores the list, would only pay for updating it);
    * the list is *right*: with the allocated list the energy equals all-pairs (1e-9).

    Args:
        model: an :class:`~qdyn.models.base.EnergyModel` (``config["cutoff"]`` in Å).
        params: its parameters.  R: [n, 3] Å.  system: its :class:`~qdyn.system.System`.
        skin: Verlet skin [Å].
        required: raise instead of returning None when no list can be used.

    Returns:
        ``NeighborListFns`` (``allocate`` / ``update``) or None.

    Raises:
        QdynInputError: ``required`` and the system is not periodic, the model has no cutoff
            or does not read the list, or the list does not reproduce all-pairs.
    """
    import jax.numpy as jnp
    import numpy as np

    from ..compiled import shared_jit
    from ..descriptors.neighbors import neighbor_list_fn

    def refuse(why):
        if required:
            raise QdynInputError(f"neighbor_list=on, but {why}")
        return None

    cutoff = (model.config or {}).get("cutoff")
    if system.box is None:
        return refuse("the system is not periodic (no box)")
    if cutoff is None:
        return refuse(f"{model.name} has no cutoff in its config")
    nf = neighbor_list_fn(system.box, float(cutoff), skin=skin)
    R = jnp.asarray(R)
    nbrs = nf.allocate(R)
    # compiled: run op by op, the three energies cost hundreds of one-operation compiles
    energy = shared_jit(model.apply)
    dense = float(energy(params, R, system))
    empty = nbrs.set(idx=jnp.full_like(nbrs.idx, R.shape[0]))  # index n = an empty slot
    if np.isclose(float(energy(params, R, system, empty)), dense, rtol=1e-12, atol=0.0):
        return refuse(f"{model.name} does not read neighbour lists")
    listed = float(energy(params, R, system, nbrs))
    if not np.isclose(listed, dense, rtol=1e-9, atol=1e-9):
        return refuse(f"{model.name}'s energy with the list ({listed!r} eV) differs from all pairs ({dense!r} eV)")
    return nf
