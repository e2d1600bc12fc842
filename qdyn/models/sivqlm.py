"""The symmetry-invariant variational quantum learning model (siVQLM).

Implements the invariant quantum force field of Le, Kiss, Schuhmacher, Tavernelli and
Tacchino, "Symmetry-invariant quantum machine learning force fields", New J. Phys. 27,
023015 (2025):

* translation invariance: the circuit reads difference vectors from a central atom;
* rotation invariance: singlet initial state, SU(2)-equivariant encoding
  ``exp(-i α (x·σ)/2)`` of every vector (``rep`` parallel encodings each), Heisenberg
  exchange layers ``exp(-i J (XX+YY+ZZ))`` and a Heisenberg observable all commute with a
  global SU(2) rotation;
* permutation invariance: couplings and encoding strengths are tied on orbits of the
  like-atom exchange group (:mod:`qdyn.quantum.layout`);
* reflection: with one or two encoded vectors every SO(3) invariant is O(3) invariant; with
  three or more the circuit can produce pseudoscalars (triple products), so the model
  averages the circuit over x → -x (``parity_average``, on by default there);
* optional symmetry breaking by RZ(ε) layers; near-identity initialisation (small J).

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax, numpy as np
    >>> from qdyn.models import sivqlm
    >>> from qdyn.system import System
    >>> model = sivqlm.build("H2O", layers=2)
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    >>> E = model.apply(params, R, System.create(["O", "H", "H"]))
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import jax
import jax.numpy as jnp

from ..quantum.invariant import invariant_circuit
from ..quantum.layout import InvariantLayout, build_layout
from ..quantum.templates import MoleculeTemplate, resolve_template, template_check
from ..system import System
from .base import EnergyModel, species_shift, template_arrays

Backend = Literal["statevector", "pennylane", "pennylane-expm"]


def build(
    template: Union[str, MoleculeTemplate],
    *,
    rep: Optional[int] = None,
    layers: int = 6,
    blocks: int = 1,
    coupling: Literal["ring", "all"] = "ring",
    symmetry_breaking: bool = False,
    parity_average: Optional[bool] = None,
    backend: Backend = "statevector",
    scan_unroll: int = 1,
    init_coupling_std: float = 0.01,
) -> EnergyModel:
    """Build a siVQLM :class:`~qdyn.models.base.EnergyModel`.

    Args:
        template: a :data:`~qdyn.quantum.templates.TEMPLATES` key ("LiH", "H2O",
            "water_dimer") or a :class:`~qdyn.quantum.templates.MoleculeTemplate`.
        rep: parallel encodings per vector (qubits = vectors × rep).
        layers: D, data re-uploading layers. blocks: B, exchange blocks per layer.
        coupling: exchange pairs before symmetrisation: nearest neighbours on a ring of
            qubits (the paper's brickwork) or all pairs.
        symmetry_breaking: add trainable RZ(ε) layers (breaks rotation invariance).
        parity_average: average over x → -x; default on when ≥ 3 vectors are encoded.
        backend: "statevector" (pure JAX, layers in ``lax.scan``) or "pennylane" (the
            closed-form QNode on default.qubit, backprop) or "pennylane-expm" (every gate a
            QubitUnitary of expm, as PennyLane's public demo writes it: slow, the reference
            for tests and benchmarks). All three compute the same numbers.
        scan_unroll: layers per scan iteration (trades compile time for speed).
        init_coupling_std: spread of the initial couplings J (near identity).
    """
    template, rep = resolve_template(template, rep)
    n_vec = len(template.vectors)
    if parity_average is None:
        parity_average = n_vec >= 3
    layout = build_layout(
        template, rep=rep, layers=layers, blocks=blocks, coupling=coupling, symmetry_breaking=symmetry_breaking
    )
    circuit = invariant_circuit(layout, scan_unroll=scan_unroll)
    if backend == "statevector":
        expval = circuit.expval
    elif backend in ("pennylane", "pennylane-expm"):
        expval = circuit.qnode(style="closed" if backend == "pennylane" else "expm")
    else:
        raise ValueError(f"backend must be 'statevector', 'pennylane' or 'pennylane-expm', got {backend!r}")

    species, table, n_atoms, heads, tails = template_arrays(template)
    shapes = circuit.param_shapes

    def init(key):
        k1, k2 = jax.random.split(key)
        dtype = jnp.result_type(float)
        params = {
            "alpha": 1.0 + 0.1 * jax.random.normal(k1, shapes["alpha"], dtype),
            "J": init_coupling_std * jax.random.normal(k2, shapes["J"], dtype),
            "scale": jnp.ones((), dtype),
            "shift": jnp.zeros((len(species),), dtype),
        }
        if symmetry_breaking:
            params["eps"] = jnp.zeros(shapes["eps"], dtype)
        return params

    def circuit_energy(params, R):
        vecs = R[heads] - R[tails]
        cparams = {k: params[k] for k in ("alpha", "J", "eps") if k in params}
        if parity_average:
            both = jnp.stack([vecs, -vecs])
            return jnp.mean(jax.vmap(expval, in_axes=(None, 0))(cparams, both))
        return expval(cparams, vecs)

    def apply(params, R, system: System, neighbor=None):
        del neighbor  # every pair is seen (dense): a neighbour list changes nothing here
        R = jnp.asarray(R)
        e = params["scale"] * circuit_energy(params, R[:n_atoms])
        return e + species_shift(params["shift"], table, system)

    config = {
        "family": "sivqlm",
        "template": template.name,
        "symbols": list(template.symbols),
        "vectors": [list(v) for v in template.vectors],
        "symmetries": [list(s) for s in template.symmetries],
        "rep": rep,
        "layers": layers,
        "blocks": blocks,
        "coupling": coupling,
        "symmetry_breaking": symmetry_breaking,
        "parity_average": parity_average,
        "backend": backend,
        "n_qubits": circuit.n_qubits,
    }
    return EnergyModel(init=init, apply=apply, check=template_check(template), name=f"siVQLM[{template.name}]",
                       species=species, config=config)


def layout_of(model: EnergyModel) -> InvariantLayout:
    """Rebuild the circuit layout of a siVQLM from its config (for drawing and counts)."""
    c = model.config
    template = MoleculeTemplate(
        symbols=tuple(c["symbols"]),
        vectors=tuple(tuple(v) for v in c["vectors"]),
        symmetries=tuple(tuple(s) for s in c["symmetries"]),
        name=c["template"],
    )
    return build_layout(
        template, rep=c["rep"], layers=c["layers"], blocks=c["blocks"], coupling=c["coupling"],
        symmetry_breaking=c["symmetry_breaking"],
    )
