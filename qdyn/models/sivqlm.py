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

from typing import ClassVar, Literal, Optional, Sequence

import jax
import jax.numpy as jnp
from pydantic import Field

from ..quantum.invariant import invariant_circuit
from ..quantum.layout import InvariantLayout, build_layout
from ..quantum.templates import resolve_template, template_check
from ..system import System
from .base import CLASSICAL, QUANTUM, EnergyModel, species_shift, template_arrays
from .config import ModelConfig, QuantumSettings, TemplateSettings, keyword_builder

class SiVQLMConfig(ModelConfig, TemplateSettings, QuantumSettings):
    """Settings of a siVQLM (the paper's symmetry-invariant circuit)."""

    # run directories written before the template became a setting also stored its atoms
    derived: ClassVar[frozenset] = frozenset({"n_qubits", "symbols", "vectors", "symmetries"})

    family: Literal["sivqlm"] = "sivqlm"
    layers: int = Field(6, ge=1, description="data re-uploading layers D")
    blocks: int = Field(1, ge=1, description="exchange blocks B per layer")
    coupling: Literal["ring", "all"] = Field("ring", description="exchange pairs before symmetrisation: neighbours "
                                                                 "on a ring of qubits (the paper's brickwork) or all")
    symmetry_breaking: bool = Field(False, description="trainable RZ(eps) layers (breaks rotation invariance)")
    parity_average: Optional[bool] = Field(None, description="average over x -> -x; default on with >= 3 vectors")
    scan_unroll: Optional[int] = Field(None, ge=1, description="layers per scan iteration (compile time vs "
                                       "speed); default: all layers up to 6 qubits, else 1")
    init_coupling_std: float = Field(0.01, ge=0, description="spread of the initial couplings J (near identity)")

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        del species  # the template fixes the atoms
        return _build(self)


def _build(cfg: SiVQLMConfig) -> EnergyModel:
    """Build a siVQLM :class:`~qdyn.models.base.EnergyModel` (see :class:`SiVQLMConfig`)."""
    layers, blocks, coupling, symmetry_breaking = cfg.layers, cfg.blocks, cfg.coupling, cfg.symmetry_breaking
    parity_average, init_coupling_std = cfg.parity_average, cfg.init_coupling_std
    template, rep = resolve_template(cfg.template, cfg.rep)
    n_vec = len(template.vectors)
    if parity_average is None:
        parity_average = n_vec >= 3
    layout = build_layout(
        template, rep=rep, layers=layers, blocks=blocks, coupling=coupling, symmetry_breaking=symmetry_breaking
    )
    circuit = invariant_circuit(layout, scan_unroll=cfg.scan_unroll)
    expval = cfg.circuit_fn(circuit, has_expm_reference=True)

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

    resolved = cfg.model_copy(update={"rep": rep, "parity_average": parity_average})
    config = {**resolved.settings(), "n_qubits": circuit.n_qubits}
    groups = {"alpha": QUANTUM, "J": QUANTUM, "eps": QUANTUM, "scale": CLASSICAL, "shift": CLASSICAL}
    return EnergyModel(init=init, apply=apply, check=template_check(template), name=f"siVQLM[{template.name}]",
                       species=species, config=config, groups=groups)


build = keyword_builder(SiVQLMConfig, positional=("template",))


def layout_of(model: EnergyModel) -> InvariantLayout:
    """Rebuild the circuit layout of a siVQLM from its config (for drawing and counts)."""
    cfg = SiVQLMConfig.model_validate({k: v for k, v in model.config.items() if k not in SiVQLMConfig.derived})
    template, rep = resolve_template(cfg.template, cfg.rep)
    return build_layout(template, rep=rep, layers=cfg.layers, blocks=cfg.blocks, coupling=cfg.coupling,
                        symmetry_breaking=cfg.symmetry_breaking)
