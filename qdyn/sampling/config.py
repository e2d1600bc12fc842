"""The bias config of ``qdyn md --bias bias.yaml`` (pydantic, unknown keys rejected) and
its translation into a :class:`~qdyn.sampling.bias.Bias`, per-replica states and a
:class:`~qdyn.sampling.exchange.ReplicaExchange`.

Example (YAML)::

    cvs:
      - {kind: distance, atoms: [0, 3]}      # O–O of the water dimer, Å
    umbrella:
      centers: [2.6, 2.8, 3.0, 3.2]          # one window per replica (replicas = 4)
      kappa_eV: 2.0                          # eV/Å²
    exchange: {enabled: true}
"""

from __future__ import annotations

import functools
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..validation import QdynInputError
from . import cv as cvs
from .bias import Bias, BiasState, make_bias, stack_states
from .exchange import ReplicaExchange, tempering_scales

_ATOMS = {"distance": 2, "angle": 3, "dihedral": 4, "difference": 4, "position": 1}


class CVConfig(BaseModel):
    """One collective variable."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["distance", "angle", "dihedral", "difference", "coordination", "position"] = Field(
        description="distance (Å), angle and dihedral (radians), difference of two distances (Å), coordination "
                    "number (dimensionless) or a Cartesian coordinate (Å)")
    atoms: list[int] = Field(description="atom indices (0-based): 2 for distance, 3 angle, 4 dihedral and difference, "
                                         "1 position; group A for coordination")
    group_b: list[int] = Field(default_factory=list, description="coordination: the atoms counted around group A")
    r0_A: float = Field(2.5, gt=0, description="coordination: switching distance, Å")
    axis: Literal[0, 1, 2] = Field(0, description="position: Cartesian axis (0 = x, 1 = y, 2 = z)")

    @model_validator(mode="after")
    def _atom_count(self):
        need = _ATOMS.get(self.kind)
        if need is not None and len(self.atoms) != need:
            raise ValueError(f"a {self.kind} CV needs {need} atoms, got {len(self.atoms)}")
        if self.kind == "coordination" and not (self.atoms and self.group_b):
            raise ValueError("a coordination CV needs atoms (group A) and group_b")
        return self

    def function(self):
        """``cv(R, box) -> [...]``."""
        a = tuple(self.atoms)
        if self.kind == "coordination":
            return functools.partial(_coordination, a=a, b=tuple(self.group_b), r0=self.r0_A)
        if self.kind == "position":
            return functools.partial(_position, atom=a[0], axis=self.axis)
        return functools.partial(_indexed, fn=getattr(cvs, self.kind), atoms=a)

    @property
    def period(self) -> Optional[float]:
        return cvs.PERIODS[self.kind]


def _indexed(R, box, *, fn, atoms):
    return fn(R, *atoms, box=box)


def _coordination(R, box, *, a, b, r0):
    return cvs.coordination(R, a, b, r0, box=box)


def _position(R, box, *, atom, axis):
    return cvs.position(R, atom, axis)


class MetadynamicsConfig(BaseModel):
    """Well-tempered metadynamics: one independent bias per replica, or one bias shared by
    all replicas (multiple walkers)."""

    model_config = ConfigDict(extra="forbid")

    sigma: list[float] = Field(description="Gaussian width per CV, in the CV's unit (Å, radians)")
    height_eV: float = Field(0.01, gt=0, description="initial hill height, eV")
    pace_steps: int = Field(100, gt=0, description="MD steps between hills")
    bias_factor: float = Field(10.0, gt=1, description="well-tempered bias factor γ = (T + ΔT)/T")
    max_hills: Optional[int] = Field(None, gt=0, description="hill buffer size (default n_steps / pace_steps, "
                                                              "times the replicas when walkers is shared)")
    walkers: Literal["independent", "shared"] = Field(
        "independent", description="independent: each replica builds its own bias; shared: multiple walkers, every "
                                   "replica deposits into one bias that all replicas feel")


class UmbrellaConfig(BaseModel):
    """Harmonic restraints, one window per replica (replicas = number of windows)."""

    model_config = ConfigDict(extra="forbid")

    centers: list[list[float]] | list[float] = Field(
        description="window centres, one per replica: numbers for one CV, lists for several (CV units)")
    kappa_eV: float | list[float] = Field(
        description="spring constant, eV per CV unit² (eV/Å², eV/rad²); one value or one per CV")


class ExchangeConfig(BaseModel):
    """Replica exchange between neighbouring replicas after every compiled block."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="attempt swaps between neighbouring replicas")
    max_temperature_K: Optional[float] = Field(
        None, gt=0, description="parallel tempering: geometric ladder from the MD temperature up to this, K "
                                "(no value: Hamiltonian exchange of the umbrella windows / metadynamics biases)")
    seed: int = Field(0, description="seed of the acceptance draws")


class BiasConfig(BaseModel):
    """Enhanced sampling for ``qdyn md --bias``: CVs plus metadynamics, umbrella windows
    and/or replica exchange."""

    model_config = ConfigDict(extra="forbid")

    cvs: list[CVConfig] = Field(description="the collective variables")
    metadynamics: Optional[MetadynamicsConfig] = Field(None, description="well-tempered metadynamics on the CVs")
    umbrella: Optional[UmbrellaConfig] = Field(None, description="umbrella windows on the CVs")
    exchange: Optional[ExchangeConfig] = Field(None, description="replica exchange / parallel tempering")
    fes_bins: int = Field(60, gt=1, description="bins (per CV) of the reported free-energy profile")

    @model_validator(mode="after")
    def _consistent(self):
        if not self.cvs:
            raise ValueError("give at least one CV")
        if self.metadynamics is not None and len(self.metadynamics.sigma) != len(self.cvs):
            raise ValueError(f"metadynamics.sigma needs one width per CV ({len(self.cvs)})")
        if (self.metadynamics is not None and self.metadynamics.walkers == "shared" and self.exchange is not None
                and self.exchange.enabled):
            raise ValueError("metadynamics walkers: shared gives every replica the same bias; exchanging it between "
                             "replicas does nothing (use walkers: independent with exchange)")
        if self.metadynamics is None and self.umbrella is None and self.exchange is None:
            raise ValueError("a bias config needs metadynamics, umbrella or exchange")
        return self


def load_bias_config(path) -> BiasConfig:
    """Read and validate a bias YAML (the shared config reader and error style: one
    :class:`~qdyn.train.config.ConfigError` naming the file and every offending key)."""
    from ..train.config import read_yaml_mapping, validate_config

    return validate_config(BiasConfig, read_yaml_mapping(path, "a bias "), str(path), "bias ")


def build(cfg: BiasConfig, *, replicas: int, n_steps: int, temperature_K: float
          ) -> tuple[Bias, BiasState, Optional[ReplicaExchange]]:
    """(bias, per-replica states, exchange or None) for a run of ``replicas`` replicas."""
    n_cv = len(cfg.cvs)
    md = cfg.metadynamics
    bias = make_bias(cvs.stack([c.function() for c in cfg.cvs]), periods=[c.period for c in cfg.cvs],
                     sigma=md.sigma if md else (), height_eV=md.height_eV if md else 0.0,
                     pace=md.pace_steps if md else 1, bias_factor=md.bias_factor if md else 10.0,
                     temperature_K=temperature_K,
                     max_hills=(md.max_hills or _default_hills(md, n_steps, replicas)) if md else 0,
                     walkers=md.walkers if md else "independent")
    centers = np.zeros((replicas, n_cv))
    kappa = np.zeros(n_cv)
    if cfg.umbrella is not None:
        centers = np.asarray(cfg.umbrella.centers, dtype=float).reshape(-1, n_cv) if n_cv > 1 else \
            np.asarray(cfg.umbrella.centers, dtype=float).reshape(-1, 1)
        if centers.shape[0] != replicas:
            raise QdynInputError(f"umbrella: {centers.shape[0]} windows but {replicas} replicas (one window each)")
        kappa = np.broadcast_to(np.asarray(cfg.umbrella.kappa_eV, dtype=float), (n_cv,))
    ex = cfg.exchange if cfg.exchange is not None and cfg.exchange.enabled else None
    scales = np.ones(replicas)
    if ex is not None and ex.max_temperature_K is not None:
        if ex.max_temperature_K < temperature_K:
            raise QdynInputError(f"exchange.max_temperature_K={ex.max_temperature_K} K is below the MD temperature "
                                 f"{temperature_K} K")
        scales = tempering_scales(temperature_K, ex.max_temperature_K, replicas)
    if ex is not None and replicas < 2:
        raise QdynInputError("replica exchange needs at least 2 replicas")
    states = stack_states([bias.init(n_cv=n_cv, center=centers[r], kappa=kappa, scale=float(scales[r]))
                           for r in range(replicas)])
    exchange = None if ex is None else ReplicaExchange(bias, temperature_K=temperature_K, seed=ex.seed)
    return bias, states, exchange


def _default_hills(md: MetadynamicsConfig, n_steps: int, replicas: int) -> int:
    """One slot per deposit: every pace_steps, one hill per walker of the bias."""
    return max(n_steps // md.pace_steps, 1) * (replicas if md.walkers == "shared" else 1)


def example() -> BiasConfig:
    """The config ``qdyn template --kind bias`` prints: O–O umbrella windows of the water dimer."""
    return BiasConfig(cvs=[CVConfig(kind="distance", atoms=[0, 3])],
                      umbrella=UmbrellaConfig(centers=[2.6, 2.8, 3.0, 3.2], kappa_eV=2.0),
                      exchange=ExchangeConfig())
