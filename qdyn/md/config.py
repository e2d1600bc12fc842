"""The ``qdyn md`` configuration (pydantic, ``extra="forbid"``): validated before anything
compiles; a misspelled key is an error naming the file and the key.

Keys use the library's names (``n_steps``, ``replicas``, ``dt_fs``, ``temperature_K``, as in
:func:`qdyn.md.run_md`); command-line flags override the file.

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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..train.config import read_yaml_mapping, validate_config


class MDConfig(BaseModel):
    """Everything ``qdyn md`` needs, in qdyn units (K, fs, bar, Å)."""

    model_config = ConfigDict(extra="forbid")

    model: Path = Field(description="a finished training run directory (qdyn train --out)")
    structure: Optional[Path] = Field(None, description="start structure: a file, shipped:NAME or a preset (water, lih, "
                                                        "water_dimer); default: the model's reference molecule")
    length_unit: Optional[str] = Field(None, description="length unit of the structure file if it does not record one")
    frame: int = Field(0, ge=0, description="frame of structure to start from")
    ensemble: Literal["nve", "nvt", "nvt-langevin", "nvt-nose-hoover", "npt"] = Field(
        "nvt", description="nve; nvt (= nvt-langevin); nvt-nose-hoover; npt (periodic structures)")
    temperature_K: float = Field(300.0, gt=0, description="thermostat target and initial-velocity temperature, K")
    dt_fs: float = Field(0.5, gt=0, le=5.0, description="time step, fs")
    n_steps: int = Field(2000, gt=0, description="a multiple of stride")
    replicas: int = Field(1, ge=1, description="independent replicas run at once (vmapped)")
    devices: Union[Annotated[int, Field(ge=1)], Literal["all"]] = Field(
        1, description="devices the replicas are split over (docs/parallel.md): a count or all; replicas must be "
                       "a multiple of it")
    stride: int = Field(10, ge=1, description="steps between trajectory frames")
    bias: Optional[Path] = Field(None, description="enhanced sampling: a bias config YAML (qdyn template --kind "
                                                   "bias): metadynamics, umbrella windows, replica exchange")
    friction_per_fs: float = Field(0.01, gt=0, description="Langevin friction, 1/fs")
    tau_fs: float = Field(100.0, gt=0, description="Nosé–Hoover thermostat time constant, fs (nvt-nose-hoover, npt)")
    pressure_bar: Optional[float] = Field(None, description="NPT target pressure, bar (npt only)")
    barostat_tau_fs: float = Field(1000.0, gt=0, description="NPT barostat time constant, fs")
    store_replicas: int = Field(1, ge=1, description="replicas written to the trajectory")
    seed: int = Field(0, description="random seed of initial velocities and thermostat noise")
    restart: bool = Field(False, description="continue from out/checkpoint.npz")
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
    check_plausibility: bool = Field(True, description="refuse temperatures and structures outside any chemistry "
                                                       "(qdyn.data.plausibility)")

    @model_validator(mode="after")
    def _consistent(self):
        if (self.ensemble == "npt") != (self.pressure_bar is not None):
            raise ValueError("pressure_bar [bar] is needed with ensemble npt and only there")
        if self.n_steps % self.stride:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of stride ({self.stride})")
        if self.ensemble == "npt" and self.neighbor_list == "on":
            raise ValueError("npt runs dense models only: neighbor_list must be auto or off")
        if self.check_plausibility:
            from ..data.plausibility import check_temperature

            check_temperature(self.temperature_K, where="temperature_K")  # a ValueError: reported with the key
        return self


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
