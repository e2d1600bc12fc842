"""The ``qdyn md`` configuration (pydantic, ``extra="forbid"``): validated before anything
compiles; a misspelled key is an error naming the file and the key.

The physics keys are those of :class:`qdyn.md.settings.MDSettings` (``ensemble``, ``dt_fs``,
``n_steps``, ``temperature_K``, ``replicas``, ...; their defaults are declared there once) and
``stride``, ``store_replicas``, ``restart`` those of :class:`~qdyn.md.settings.MDOutput`;
command-line flags override the file.

Example ``md.yaml``::

    model: runs/water_box
    structure: water_box.xyz
    ensemble: nvt
    temperature_K: 300
    dt_fs: 0.5
    n_steps: 2000
    neighbor_list: auto      # periodic systems: a JAX-MD neighbour list when the model uses one
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import ConfigDict, Field, model_validator

from ..train.config import read_yaml_mapping, validate_config
from .settings import MDOutput, MDSettings

_OUTPUT = MDOutput()  # the output defaults, declared once in MDOutput


class MDConfig(MDSettings):
    """Everything ``qdyn md`` needs, in qdyn units (K, fs, bar, Å): the physics keys of
    :class:`~qdyn.md.settings.MDSettings` (with its defaults) and what to load and write."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="a finished training run directory (qdyn train --out)")
    structure: Optional[Path] = Field(None, description="start structure: a file, shipped:NAME or a preset (water, lih, "
                                                        "water_dimer); default: the model's reference molecule")
    length_unit: Optional[str] = Field(None, description="length unit of the structure file if it does not record one")
    frame: int = Field(0, ge=0, description="frame of structure to start from")
    devices: Union[Annotated[int, Field(ge=1)], Literal["all"]] = Field(
        1, description="devices the replicas are split over (docs/parallel.md): a count or all; replicas must be "
                       "a multiple of it")
    stride: int = Field(_OUTPUT.stride, ge=1, description="steps between trajectory frames")
    bias: Optional[Path] = Field(None, description="enhanced sampling: a bias config YAML (qdyn template --kind "
                                                   "bias): metadynamics, umbrella windows, replica exchange")
    store_replicas: int = Field(_OUTPUT.store_replicas, ge=1, description="replicas written to the trajectory")
    seed: int = Field(0, description="random seed of initial velocities and thermostat noise")
    restart: bool = Field(_OUTPUT.restart, description="continue from out/checkpoint.npz")
    spectrum: bool = Field(False, description="also relax, compute harmonic frequencies and the NVE spectrum")
    neighbor_list: Literal["auto", "on", "off"] = Field(
        "auto", description="periodic systems: auto uses a neighbour list when the model reads one and it "
                            "reproduces the all-pairs energy; on requires it; off never")
    neighbor_skin_A: float = Field(0.5, ge=0, description="Verlet skin of the neighbour list, Å")
    out: Path = Field(Path("runs/md"), description="output directory")
    max_force_std: Optional[float] = Field(None, gt=0, description="uncertainty watchdog: stop a replica when an "
                                                                   "atom's force σ exceeds this, eV/Å (a model trained "
                                                                   "with uncertainty: ensemble or laplace)")
    max_energy_std_per_atom: Optional[float] = Field(None, gt=0, description="uncertainty watchdog: stop a replica "
                                                                             "when the energy σ per atom exceeds "
                                                                             "this, eV")

    @model_validator(mode="after")
    def _consistent_with_output(self):
        if self.n_steps % self.stride:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of stride ({self.stride})")
        if self.ensemble == "npt" and self.neighbor_list == "on":
            raise ValueError("npt runs dense models only: neighbor_list must be auto or off")
        return self

    def output(self, out_dir: Path, *, progress=None, provenance: Optional[dict] = None) -> MDOutput:
        """The output part: trajectories and checkpoints in ``out_dir``."""
        return MDOutput(out_dir=out_dir, stride=self.stride, store_replicas=self.store_replicas, restart=self.restart,
                        progress=progress, provenance=provenance)


def load_md_config(path: Optional[Path], overrides: dict) -> MDConfig:
    """Read ``path`` (YAML, optional), apply ``overrides`` (keys given on the command line;
    None values are ignored) and validate.

    Raises:
        ConfigError: unreadable file, unknown key or invalid value (naming file and key).
    """
    raw, source = {}, "command line"
    if path is not None:
        raw, source = read_yaml_mapping(path, "an MD "), str(path)
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    return validate_config(MDConfig, raw, source, "MD ")
