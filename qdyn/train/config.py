"""Training configuration (pydantic, ``extra="forbid"``): validated before anything compiles.

A misspelled key is an error, not a silently ignored setting. ``qdyn template`` writes the
defaults below as a commented YAML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..models.config import families
from ..models.sivqlm import SiVQLMConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The model section: one config class per family, declared next to its model
# (qdyn.models.<family>), discriminated by `family`.
ModelSection = Annotated[Union[tuple(families().values())], Field(discriminator="family")]


class DataConfig(_Strict):
    path: Union[str, list[str]] = Field(
        "shipped:H2O", description="a file the data layer reads, or shipped:NAME; a list is concatenated (same atoms)")
    energy_unit: Optional[str] = Field(None, description="for files without unit records")
    length_unit: Optional[str] = None
    n_train: Optional[int] = Field(None, ge=1)
    n_val: Optional[int] = Field(None, ge=0)
    n_test: Optional[int] = Field(None, ge=0)
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0


class LossConfig(_Strict):
    energy_weight: float = Field(1.0, ge=0)
    force_weight: float = Field(1.0, ge=0)
    energy_weight_final: Optional[float] = Field(None, ge=0, description="linear schedule to this value")
    force_weight_final: Optional[float] = Field(None, ge=0)
    per_atom: bool = Field(True, description="energy residuals divided by the atom count")
    net_force_weight: float = Field(0.0, ge=0, description="penalty on the net force (isolated systems)")
    normalization: Literal["species_lstsq", "minmax", "none"] = "species_lstsq"
    # Multistate models only (docs/multistate.md); all off by default.
    smoothness_weight: float = Field(0.0, ge=0, description="penalty on |dW_kl/dR|^2 of the diabatic couplings")
    coupling_far_weight: float = Field(0.0, ge=0, description="penalty on couplings where the reference gap is large")
    diabat_order_weight: float = Field(0.0, ge=0, description="penalty on W_kk > W_k+1,k+1 where the gap is large")
    coupling_gap_scale: float = Field(0.5, gt=0, description="eV: gap beyond which a state pair counts as far apart")


class OptimConfig(_Strict):
    optimizer: Literal["adam", "adamw"] = "adam"
    learning_rate: float = Field(1e-2, gt=0)
    schedule: Literal["constant", "cosine", "exponential"] = "cosine"
    final_lr_fraction: float = Field(0.01, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    clip_norm: Optional[float] = Field(10.0, gt=0)
    reduce_on_plateau: bool = False
    plateau_patience: int = Field(20, ge=1, description="steps")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    group_lr: dict[Literal["quantum", "classical"], float] = Field(
        default_factory=dict, description="learning-rate multipliers per parameter group")
    frozen: list[Literal["quantum", "classical"]] = Field(default_factory=list)
    ema_decay: Optional[float] = Field(None, gt=0, lt=1)


class EnsembleConfig(_Strict):
    size: int = Field(4, ge=2, description="members, trained together (one vmapped step) on the same batches")


class LaplaceConfig(_Strict):
    prior_precision: float = Field(1.0, gt=0, description="λ of the Gaussian prior on the readout parameters")


class UncertaintyConfig(_Strict):
    """How the trained model estimates its uncertainty (docs/uncertainty.md)."""

    method: Literal["none", "ensemble", "laplace"] = Field(
        "none", description="ensemble: K models from K initialisations; laplace: last-layer posterior after training")
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    laplace: LaplaceConfig = Field(default_factory=LaplaceConfig)


class TrainConfig(_Strict):
    model: ModelSection = Field(default_factory=SiVQLMConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    staged: bool = Field(False, description="pretrain the classical part, then train end to end")
    pretrain_epochs: int = Field(20, ge=0)
    early_stopping_patience: Optional[int] = Field(None, ge=1, description="epochs without validation gain")
    checkpoint_every: int = Field(10, ge=1, description="epochs")
    uncertainty: UncertaintyConfig = Field(default_factory=UncertaintyConfig)

    @model_validator(mode="after")
    def _stages_fit(self):
        if self.staged and self.pretrain_epochs >= self.epochs:
            raise ValueError(f"pretrain_epochs ({self.pretrain_epochs}) must be < epochs ({self.epochs})")
        return self


class ConfigError(ValueError):
    """A configuration file that does not validate."""


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML config; errors name the file and the offending keys."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read YAML config: {e}") from e
    return parse_config(raw, source=str(path))


def parse_config(raw: dict, *, source: str = "<config>") -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{source}: invalid config: {problems}") from e


def template_yaml() -> str:
    """A commented default config."""
    cfg = TrainConfig().model_dump(mode="json")
    lines = ["# qdyn training config (all keys optional; unknown keys are rejected)",
             "# model.family: sivqlm | generic | bpnn | hybrid | multistate (see docs/training.md, docs/multistate.md)"]
    body = yaml.safe_dump(cfg, sort_keys=False)
    comments = {
        "path:": "  # shipped:H2O, shipped:LiH, shipped:water_dimer, or any file qdyn reads",
        "staged:": "  # pretrain classical params (scale/shift or networks), then all",
        "normalization:": "  # species_lstsq (reference energies + force-RMS scale) | minmax | none",
        "group_lr:": "  # e.g. {quantum: 2.0}",
        "frozen:": "  # e.g. [quantum]",
        "method:": "  # none | ensemble (size members) | laplace (last-layer, after training)",
    }
    for line in body.splitlines():
        key = line.strip().split(" ")[0]
        lines.append(line + comments.get(key, ""))
    return "\n".join(lines) + "\n"
