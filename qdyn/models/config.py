"""Model configurations: one pydantic class per model family, and each builds its model.

A family's settings and their defaults are declared once, in its config class, next to the
model (``sivqlm.SiVQLMConfig``, ``hybrid.HybridConfig``, ...). Everything else derives from it:

* ``cfg.build(species) -> EnergyModel`` builds the model (``species`` are the dataset's
  elements, for families not tied to a molecule template);
* the module's keyword API (``sivqlm.build("H2O", layers=6)``) is :func:`keyword_builder` of
  the class, so its signature and defaults are the config's;
* ``model.config`` is the validated config as a JSON dict (plus a few derived facts such as
  ``n_qubits``), which :func:`build_model` turns back into the same model (run
  directories store it);
* the training config's ``model:`` section is the discriminated union of every registered
  family (:func:`families`), so ``qdyn template`` and YAML validation know every setting.

Descriptor settings are shared by every descriptor-based family (:class:`DescriptorSettings`).

Adding a family: subclass :class:`ModelConfig` with a ``family: Literal["name"]`` field and a
``build(self, species=())`` method, in the model's own module, and import that module in
:mod:`qdyn.models` (docs/architecture.md).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..quantum.execution import Execution
from ..quantum.templates import MoleculeTemplate
from ..validation import QdynInputError

_REGISTRY: dict[str, type["ModelConfig"]] = {}


class Strict(BaseModel):
    """Unknown keys are errors, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid")


class ModelConfig(Strict):
    """Base of every family's config: a ``family`` tag and ``build``.

    Class attributes:
        derived: keys a built model adds to ``model.config`` for reports (not settings);
            :func:`build_model` drops them.
    """

    derived: ClassVar[frozenset] = frozenset({"descriptor_size"})

    @classmethod
    def __pydantic_init_subclass__(cls, **kw):
        super().__pydantic_init_subclass__(**kw)
        field = cls.model_fields.get("family")
        if field is not None and field.default is not None:
            _REGISTRY[field.default] = cls

    def build(self, species: Sequence[int] = ()):  # pragma: no cover - every family overrides it
        raise NotImplementedError

    def settings(self) -> dict:
        """The config as a JSON-serialisable dict (what ``model.config`` starts from)."""
        d = self.model_dump(mode="json")
        return {"family": d.pop("family"), **d}


class DescriptorSettings(Strict):
    """Per-atom descriptor settings shared by every descriptor-based family."""

    cutoff: float = Field(5.0, gt=0, description="neighbour cutoff radius, Å")
    n_radial: int = Field(8, ge=1, description="radial basis functions per species pair")
    zetas: list[float] = Field(default_factory=lambda: [1.0, 4.0],
                               description="symmetry descriptor: angular exponents of the G4 functions")
    eta_angular: float = Field(0.1, gt=0, description="width of the angular (G4) Gaussians, Å^-2")
    descriptor: Literal["symmetry", "power_spectrum"] = Field(
        "symmetry", description="Behler G2/G4 or radial+spherical-harmonic power spectrum (neighbour lists)")
    l_max: int = Field(2, ge=1, le=3, description="power spectrum: highest spherical-harmonic degree")
    radial_basis: Literal["bessel", "gaussian"] = Field("bessel", description="power spectrum: radial basis")

    def make_descriptor(self, species: Sequence[int]):
        """(sorted species, descriptor) with these settings."""
        from ..descriptors import make_descriptor

        return make_descriptor(species, kind=self.descriptor, cutoff=self.cutoff, n_radial=self.n_radial,
                               zetas=tuple(self.zetas), eta_angular=self.eta_angular, l_max=self.l_max,
                               radial_basis=self.radial_basis)


class TemplateSettings(Strict):
    """The molecule a template-based circuit reads, shared by the siVQLM and its generic control."""

    template: Union[str, MoleculeTemplate] = Field(
        "H2O", description="LiH, H2O, water_dimer, or a template {symbols, vectors, symmetries, name}")
    rep: Optional[int] = Field(None, ge=1, description="parallel encodings per vector (qubits = vectors x rep); "
                                                       "default per template")


class QuantumSettings(Strict):
    """How a quantum family's circuit runs (:class:`~qdyn.quantum.execution.Execution`), shared
    by every family with a circuit."""

    execution: Execution = Field(default_factory=Execution, description=(
        "backend (statevector | pennylane), PennyLane device, diff_method, shots, seed, noise"))

    @model_validator(mode="before")
    @classmethod
    def _legacy_backend(cls, data):
        # model.json files written before the execution block stored a top-level `backend`
        if isinstance(data, dict) and "backend" in data:
            data = dict(data)
            backend = data.pop("backend")
            data["execution"] = {**(data.get("execution") or {}), "backend": backend}
        return data

    def circuit_fn(self, circuit, *, has_expm_reference: bool = False):
        """The function the model runs: the circuit's statevector ``expval`` or its QNode
        (``pennylane-expm``: the demo-style reference, for circuits that have one)."""
        backend = self.execution.backend
        if backend == "statevector":
            return circuit.expval
        if backend == "pennylane-expm":
            if not has_expm_reference:
                raise QdynInputError(f"backend 'pennylane-expm' exists only for the siVQLM circuit, not {circuit.name}")
            return circuit.qnode(self.execution, style="expm")
        return circuit.qnode(self.execution)


def resolve_species(cfg_species: Optional[Sequence[int]], species: Sequence[int], family: str) -> list[int]:
    """The config's own species list, else the dataset's; one is required."""
    sp = list(cfg_species or species)
    if not sp:
        raise QdynInputError(f"{family} needs the species it models (from the dataset or `species:`)")
    return sorted(int(z) for z in sp)


# A pair wall below the data (qdyn.models.core_repulsion): r_in [Å] per species pair, or
# "auto", which training resolves from its frames into numbers before building the model.
CoreRadii = Union[None, Literal["auto"], dict[str, float]]


def resolved_core_radii(core_radii: CoreRadii) -> Optional[dict]:
    """The wall radii a model is built with: numbers (or None), never "auto"."""
    if core_radii == "auto":
        raise QdynInputError("core_radii: 'auto' is resolved from training data by `qdyn train` "
                             "(qdyn.models.core_repulsion.core_radii_from_data); give numbers here")
    return core_radii


def families() -> dict[str, type[ModelConfig]]:
    """Every registered family: ``{family name: config class}``."""
    from . import bpnn, custom, generic, hybrid, multistate, sivqlm  # noqa: F401  (registers them)

    return dict(_REGISTRY)


def parse_model_config(config: dict) -> ModelConfig:
    """Validate a model config dict (a ``model:`` section or a stored ``model.config``)."""
    fams = families()
    family = config.get("family")
    if family not in fams:
        raise QdynInputError(f"unknown model family {family!r}; known: {sorted(fams)}")
    cls = fams[family]
    settings = {k: v for k, v in config.items() if k not in cls.derived}
    try:
        return cls.model_validate(settings)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise QdynInputError(f"invalid {family} model config: {problems}") from e


def build_model(config: dict, *, species: Sequence[int] = ()):
    """Build any qdyn model from its config dict (``family`` + settings)."""
    return parse_model_config(config).build(species)


def keyword_builder(cls: type[ModelConfig], *, positional: Sequence[str] = ()):
    """The module-level ``build(...)`` of a family: keyword arguments are the config's fields
    (same names, same defaults, validated: a misspelled keyword is an error), and it returns
    ``cls(...).build()``. ``positional`` names fields that may also be passed by position."""
    names = [n for n in cls.model_fields if n != "family"]
    params = []
    for n in names:
        f = cls.model_fields[n]
        default = inspect.Parameter.empty if f.is_required() else f.get_default(call_default_factory=True)
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if n in positional else inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(n, kind, default=default, annotation=f.annotation))
    params.sort(key=lambda p: p.kind)  # positional ones first
    signature = inspect.Signature(params)

    def build(*args: Any, **settings: Any):
        bound = signature.bind(*args, **settings)  # TypeError names an unknown keyword
        try:
            cfg = cls(**bound.arguments)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
            raise QdynInputError(f"{cls.__name__}: {problems}") from e
        return cfg.build()

    build.__signature__ = signature
    build.__doc__ = (f"Build a model from :class:`{cls.__name__}` settings (same names and defaults); "
                     f"see its fields for what each means.")
    build.__name__ = "build"
    return build
