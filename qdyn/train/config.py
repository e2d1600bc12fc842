"""Training configuration (pydantic, ``extra="forbid"``): validated before anything compiles.

A misspelled key is an error, not a silently ignored setting. ``qdyn template`` writes the
defaults below as a commented YAML file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..models.config import families
from .constraints import ConstraintsConfig
from ..models.sivqlm import SiVQLMConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The model section: one config class per family, declared next to its model
# (qdyn.models.<family>), discriminated by `family`.
ModelSection = Annotated[Union[tuple(families().values())], Field(discriminator="family")]


class DataConfig(_Strict):
    path: Union[str, list[str]] = Field(
        "shipped:H2O", description="a file the data layer reads, or shipped:NAME; a list is concatenated (same atoms)")
    energy_unit: Optional[str] = Field(None, description="energy unit of files without unit records (eV, Hartree, kcal/mol, ...)")
    length_unit: Optional[str] = Field(None, description="length unit of files without unit records (Angstrom, Bohr, ...)")
    energy_key: str = Field("energy", description="extxyz: the comment key holding the energy (e.g. REF_energy)")
    forces_key: str = Field("forces", description="extxyz: the per-atom property holding the forces (e.g. REF_forces)")
    n_train: Optional[int] = Field(None, ge=1, description="training frames (default: from fractions)")
    n_val: Optional[int] = Field(None, ge=0, description="validation frames (default: from fractions)")
    n_test: Optional[int] = Field(None, ge=0, description="test frames (default: from fractions)")
    fractions: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, validation, test fractions")
    split_seed: int = Field(0, description="seed of the random split")
    check_plausibility: bool = Field(
        True, description="refuse energies, forces and coordinates outside any chemistry in the declared units "
                          "(a Hartree file read as eV); off only for deliberately exotic data")
    weights: Optional[list[float]] = Field(None, description=(
        "one weight per entry of a path list: every frame of that source weighs this much in the loss (times the "
        "energy-based frame weights; normalised to mean 1 over the training frames); None: 1 each"))

    @model_validator(mode="after")
    def _one_weight_per_source(self):
        if self.weights is None:
            return self
        n = len(self.path) if isinstance(self.path, list) else 1
        if len(self.weights) != n or not isinstance(self.path, list):
            raise ValueError(f"data.weights: {len(self.weights)} weight(s) for {n} source(s); give data.path as a "
                             "list and one weight per entry")
        if min(self.weights) <= 0:
            raise ValueError("data.weights: every weight must be positive (leave a source out instead)")
        return self


class LossConfig(_Strict):
    energy_weight: float = Field(1.0, ge=0, description="weight of the energy MSE")
    force_weight: float = Field(1.0, ge=0, description="weight of the force MSE")
    energy_weight_final: Optional[float] = Field(None, ge=0, description="linear schedule to this value")
    force_weight_final: Optional[float] = Field(None, ge=0, description="linear schedule to this value")
    per_atom: bool = Field(True, description="energy residuals divided by the atom count")
    net_force_weight: float = Field(0.0, ge=0, description=(
        "no-op, kept so old configs load: every qdyn model's forces sum to zero by construction, so the net-force "
        "penalty is identically 0 (a non-zero weight warns); use constraints for terms that act"))
    dipole_weight: float = Field(0.0, ge=0, description=(
        "weight of the dipole error |Σ q_i R_i - μ_ref|² (e·Å, over the data's dipole RMS); needs a model with "
        "electrostatics and data with extras['dipole'] [n, 3] e·Å"))
    residual: Literal["squared", "huber"] = Field("squared", description=(
        "penalty of a scaled residual x (energy over sigma_E, force component over sigma_F): squared x^2, or huber: "
        "x^2 up to huber_delta and 2 delta |x| - delta^2 beyond, so a few labels far off (an unconverged SCF, a "
        "wrong geometry) pull linearly, not quadratically"))
    huber_delta: float = Field(1.0, gt=0, description="where the huber penalty turns linear, in units of the data's "
                                                      "sigma_E / sigma_F")
    scales: Literal["spread", "robust"] = Field("spread", description=(
        "sigma_E and sigma_F from the training labels: spread (std of per-atom energies, force RMS) or robust (the "
        "same estimated from medians, which a few labels far off cannot inflate; pairs with residual: huber)"))
    frame_weight_scale_eV: Optional[float] = Field(None, gt=0, description=(
        "down-weight frames far above the lowest training frame of their composition: w = s / (s + E - E_min), "
        "s this scale in eV, normalised to mean 1 (qdyn.train.weighting); None: every frame weighs 1"))
    normalization: Literal["species_lstsq", "minmax", "none"] = Field(
        "species_lstsq", description="species_lstsq (reference energies + force-RMS scale), minmax or none")
    # Multistate models only (docs/multistate.md); all off by default.
    smoothness_weight: float = Field(0.0, ge=0, description="penalty on |dW_kl/dR|^2 of the diabatic couplings")
    coupling_far_weight: float = Field(0.0, ge=0, description="penalty on couplings where the reference gap is large")
    diabat_order_weight: float = Field(0.0, ge=0, description="penalty on W_kk > W_k+1,k+1 where the gap is large")
    coupling_gap_scale: float = Field(0.5, gt=0, description="eV: gap beyond which a state pair counts as far apart")
    nac_weight: float = Field(0.0, ge=0, description=(
        "weight of the nonadiabatic-coupling error, compared as h_ij = (E_j - E_i) d_ij in eV/Å (finite at a "
        "crossing) over its RMS in the data, up to the arbitrary sign per frame; needs data with "
        "extras['nacs_states'] [n, S, S, A, 3] 1/Å (docs/multistate.md)"))
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig, description=(
        "physics constraints at fixed probe configurations: dissociation limit, repulsive wall, energy order of "
        "conformers (docs/training.md)"))

    @model_validator(mode="after")
    def _net_force_is_a_no_op(self):
        if self.net_force_weight:
            logging.getLogger("qdyn").warning(
                "loss.net_force_weight does nothing: every qdyn model conserves momentum (its forces sum to zero), "
                "so the net-force penalty is identically 0; see loss.constraints for terms that change a fit")
        return self


class OptimConfig(_Strict):
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adam or adamw (decoupled weight decay)")
    learning_rate: float = Field(1e-2, gt=0, description="peak learning rate")
    schedule: Literal["constant", "cosine", "exponential"] = Field(
        "cosine", description="learning-rate decay over the run")
    final_lr_fraction: float = Field(0.01, gt=0, le=1, description="final / peak learning rate (cosine, exponential)")
    weight_decay: float = Field(0.0, ge=0, description="adamw weight decay")
    clip_norm: Optional[float] = Field(10.0, gt=0, description="clip the global gradient norm to this (null: no clipping)")
    reduce_on_plateau: bool = Field(False, description="also scale the learning rate down when the loss stalls")
    plateau_patience: int = Field(20, ge=1, description="steps")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="factor applied on a plateau")
    group_lr: dict[Literal["quantum", "classical"], float] = Field(
        default_factory=dict, description="learning-rate multipliers per parameter group")
    frozen: list[Literal["quantum", "classical"]] = Field(
        default_factory=list, description="parameter groups not trained, e.g. [quantum]")
    ema_decay: Optional[float] = Field(None, gt=0, lt=1, description="exponential moving average of the params (null: off)")


class EnsembleConfig(_Strict):
    size: int = Field(4, ge=2, description="members, trained together (one vmapped step) on the same batches")


class LaplaceConfig(_Strict):
    prior_precision: float = Field(1.0, gt=0, description="λ of the Gaussian prior on the readout parameters")


class UncertaintyConfig(_Strict):
    """How the trained model estimates its uncertainty (docs/uncertainty.md)."""

    method: Literal["none", "ensemble", "laplace"] = Field(
        "none", description="ensemble: K models from K initialisations; laplace: last-layer posterior after training")
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig, description="settings of method: ensemble")
    laplace: LaplaceConfig = Field(default_factory=LaplaceConfig, description="settings of method: laplace")


class MLflowConfig(_Strict):
    """MLflow tracking of a training run (needs the ``mlflow`` package)."""

    enabled: bool = Field(False, description="log the config and every epoch's metrics to MLflow")
    experiment: str = Field("qdyn", min_length=1, description="MLflow experiment name")
    tracking_uri: Optional[str] = Field(
        None, description="MLflow tracking URI, e.g. file:./mlruns or http://host:5000 (default: MLflow's own)")


class LoggingConfig(_Strict):
    """Live trackers beside the always-written history.csv (:mod:`qdyn.train.trackers`)."""

    tensorboard: bool = Field(False, description="TensorBoard event files in RUN/tensorboard (needs tensorboardX)")
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig, description="MLflow tracking")


class TrainConfig(_Strict):
    model: ModelSection = Field(default_factory=SiVQLMConfig, description="the model; family selects the rest of the section")
    data: DataConfig = Field(default_factory=DataConfig, description="dataset and split")
    loss: LossConfig = Field(default_factory=LossConfig, description="loss terms and weights")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="optimizer and learning-rate schedule")
    epochs: int = Field(100, ge=1, description="passes over the training set")
    batch_size: int = Field(32, ge=1, description="configurations per step")
    seed: int = Field(0, description="seed of parameter initialisation and batch order")
    staged: bool = Field(False, description="pretrain the classical part, then train end to end")
    pretrain_epochs: int = Field(20, ge=0, description="epochs of the classical pretraining stage (staged)")
    early_stopping_patience: Optional[int] = Field(None, ge=1, description="epochs without validation gain")
    checkpoint_every: int = Field(10, ge=1, description="epochs")
    devices: Union[Annotated[int, Field(ge=1)], Literal["all"]] = Field(
        1, description="devices the batch is split over (data parallel, docs/parallel.md): a count or all; "
                       "batches are padded with zero-weight frames to a multiple of it")
    uncertainty: UncertaintyConfig = Field(default_factory=UncertaintyConfig, description="uncertainty estimate fitted with the model (none, ensemble, laplace)")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="live trackers besides history.csv: tensorboard, mlflow")

    @model_validator(mode="after")
    def _stages_fit(self):
        if self.staged and self.pretrain_epochs >= self.epochs:
            raise ValueError(f"pretrain_epochs ({self.pretrain_epochs}) must be < epochs ({self.epochs})")
        return self


class ConfigError(ValueError):
    """A configuration file that does not validate."""


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """The top-level mapping of a YAML config file ({} when empty); a :class:`ConfigError`
    naming the file when it cannot be read or is not a mapping. ``what``: "MD ", "learn ", ""."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read YAML config: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {what or 'a '}config is a mapping of keys to values, got {type(raw).__name__}")
    return raw


def validate_config(cls: type[BaseModel], raw: dict, source: str, what: str = ""):
    """``cls.model_validate(raw)``, or one :class:`ConfigError` naming the source and every
    offending key."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{source}: invalid {what}config: {problems}") from e


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML config; errors name the file and the offending keys."""
    return parse_config(read_yaml_mapping(path, ""), source=str(path))


def parse_config(raw: dict, *, source: str = "<config>") -> TrainConfig:
    return validate_config(TrainConfig, raw, source)


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


#: Fields ``--resume`` may change: they decide how long a run goes on, how often it
#: checkpoints and over how many devices, not what a step computes (sharded steps equal
#: single-device ones to rounding, tests/test_parallel.py). Everything else (model, data, loss, optimiser,
#: batch size, seeds, stages) must match the run's recorded config. Changing ``epochs``
#: stretches the learning-rate schedule and the loss-weight ramps to the new length from
#: the step where the run continues.
RESUMABLE_FIELDS = ("epochs", "checkpoint_every", "early_stopping_patience", "devices", "logging.tensorboard",
                    "logging.mlflow.enabled", "logging.mlflow.experiment", "logging.mlflow.tracking_uri")


def _flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(recorded: dict, new: dict, *, allowed=()) -> list[str]:
    """``["model.layers: 2 -> 4", ...]`` for every field of ``new`` that differs from
    ``recorded`` (both resolved configs as JSON-like dicts), ignoring ``allowed`` fields."""
    a, b = _flatten(recorded), _flatten(new)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in allowed or a.get(key, "<unset>") == b.get(key, "<unset>"):
            continue
        diffs.append(f"{key}: {a.get(key, '<unset>')} -> {b.get(key, '<unset>')}")
    return diffs
