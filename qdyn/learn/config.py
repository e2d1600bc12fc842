"""The ``qdyn learn`` configuration (pydantic, ``extra="forbid"``): what to train, how to
explore, select and label, and when to stop. Validated before anything loads or compiles.

Example ``al.yaml``::

    train:                       # a training config (qdyn template): the model and its fit
      model: {family: bpnn, hidden: [16, 16]}
      data: {path: shipped:H2O}  # the seed set
      epochs: 50
      uncertainty: {method: ensemble, ensemble: {size: 4}}
    labeler: {method: GFN2-xTB}
    explore: {structure: water, temperature_K: 600, n_steps: 2000, replicas: 8, max_force_std: 0.3}
    select: {n_per_round: 16}
    warm_start_epochs: 10        # rounds 1, 2, ...: fewer epochs from the previous round's parameters
    max_rounds: 5
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..md.settings import MDOutput, MDSettings
from ..train.config import TrainConfig, read_yaml_mapping, validate_config
from ..validation import QdynInputError

_OUTPUT = MDOutput()  # the output defaults, declared once in MDOutput

_XTB = {"GFN2-XTB": "GFN2-xTB", "GFN1-XTB": "GFN1-xTB"}
_PYSCF = ("HF", "DFT", "MP2", "CCSD", "CCSD(T)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelerConfig(_Strict):
    """The reference method new frames are labelled with (qdyn's labellers, as ``qdyn label``)."""

    method: str = Field("GFN2-xTB", description="GFN2-xTB or GFN1-xTB (tblite); HF, DFT, MP2, CCSD, CCSD(T) "
                                                "(PySCF); or a functional name (DFT with it, e.g. B3LYP)")
    basis: str = Field("def2-SVP", description="PySCF basis set (ignored by xTB)")
    charge: int = Field(0, description="total charge, e")
    multiplicity: int = Field(1, ge=1, description="spin multiplicity 2S+1")
    max_cycle: int = Field(200, ge=1, description="SCF iterations before a frame counts as failed")
    workers: int = Field(1, ge=0, description="labelling processes, one thread each (0: in this process)")
    cache_dir: Optional[Path] = Field(None, description="per-frame label cache (default: ~/.cache/qdyn/labels); "
                                                        "what makes labelling resumable")

    def spec(self, cell=None) -> dict:
        """The labeller description :func:`qdyn.data.labelers.labeler_from_spec` rebuilds;
        ``cell`` [3, 3] Å (lattice vectors as columns) labels periodic frames in that box."""
        m = self.method.upper()
        if m in _XTB:
            return {"labeler": "TBLiteLabeler", "method": _XTB[m], "charge": self.charge,
                    "multiplicity": self.multiplicity, "max_iterations": self.max_cycle,
                    "cell": None if cell is None else np.asarray(cell, float).tolist()}
        if cell is not None:
            raise QdynInputError(f"labeler.method {self.method}: qdyn's PySCF labeller computes isolated molecules; "
                                 "a periodic explore structure needs GFN2-xTB or GFN1-xTB")
        spec = {"labeler": "PySCFLabeler", "method": m, "basis": self.basis, "charge": self.charge,
                "spin": self.multiplicity - 1, "max_cycle": self.max_cycle}
        if m not in _PYSCF:  # a functional name given as the method
            spec.update(method="DFT", xc=self.method, grid_response=True)
        return spec

    def build(self, cell=None):
        """The labeller; ``cell`` [3, 3] Å for the frames of a periodic explore structure."""
        from ..data.labelers import labeler_from_spec

        return labeler_from_spec(self.spec(cell))


class ExploreConfig(MDSettings):
    """Batched MD of the current model with the uncertainty watchdog: the physics keys of
    :class:`~qdyn.md.settings.MDSettings` (with its defaults; npt excluded) and these."""

    model_config = ConfigDict(extra="forbid")

    structure: str = Field("water", description="start structure: a file, shipped:NAME (its first frame) or a preset "
                                                "(water, lih, water_dimer)")
    frame: int = Field(0, ge=0, description="frame of structure to start from")
    replicas: int = Field(8, ge=1, description="independent replicas (vmapped); their frames are the candidates")
    stride: int = Field(_OUTPUT.stride, ge=1, description="steps between sampled (and σ-checked) frames")
    frames_per_block: int = Field(_OUTPUT.frames_per_block, ge=1, description="frames per compiled block")
    max_force_std: Optional[float] = Field(0.5, gt=0, description="watchdog: stop a replica when an atom's force σ "
                                                                  "exceeds this, eV/Å")
    max_energy_std_per_atom: Optional[float] = Field(None, gt=0, description="watchdog: stop a replica when the "
                                                                             "energy σ per atom exceeds this, eV")
    max_force_std_relative: Optional[float] = Field(
        None, gt=0, description="watchdog threshold relative to the model's own σ on its data: stop a replica when an "
                                "atom's force σ exceeds this factor × the 90th percentile, over the round's training "
                                "frames of the explored composition, of each frame's largest per-atom force σ [eV/Å] "
                                "(recomputed every round, recorded as the threshold used); replaces max_force_std, "
                                "dimensionless")
    seed: int = Field(0, description="seed of velocities and thermostat noise (round r uses seed + r)")
    neighbor_skin_A: float = Field(0.5, ge=0, description="periodic structures: Verlet skin of the JAX-MD neighbour "
                                                          "list (used when the model reads one), Å")

    @model_validator(mode="before")
    @classmethod
    def _one_force_threshold(cls, data):
        # a relative threshold replaces the absolute one's default; both given is ambiguous
        if isinstance(data, dict) and data.get("max_force_std_relative") is not None:
            if data.get("max_force_std") is not None:
                raise ValueError("give max_force_std [eV/Å] or max_force_std_relative, not both")
            data = {**data, "max_force_std": None}
        return data

    @model_validator(mode="after")
    def _explorable(self):
        if self.ensemble == "npt":
            raise ValueError("explore runs nve or a thermostat (nvt = Langevin), not npt")
        if self.n_steps % self.stride:
            raise ValueError(f"n_steps ({self.n_steps}) must be a multiple of stride ({self.stride})")
        if self.max_force_std is None and self.max_force_std_relative is None and self.max_energy_std_per_atom is None:
            raise ValueError("the watchdog needs max_force_std [eV/Å] (or max_force_std_relative) and/or "
                             "max_energy_std_per_atom [eV]")
        return self


class SelectConfig(_Strict):
    """Which explored frames are labelled."""

    method: Literal["uncertainty", "random"] = Field(
        "uncertainty", description="uncertainty: the most uncertain frames, spread out by farthest-point sampling "
                                   "in descriptor space; random: uniformly among the explored frames (a baseline)")
    n_per_round: int = Field(16, ge=1, description="frames labelled per round")
    pool_factor: float = Field(4.0, ge=1.0, description="uncertainty: farthest-point sampling among the "
                                                        "pool_factor × n_per_round most uncertain frames")
    seed: int = Field(0, description="seed of random selection (round r uses seed + r)")


class LearnConfig(_Strict):
    """Everything ``qdyn learn`` needs: explore → select → label → retrain, until the MD
    survives or a round limit."""

    train: TrainConfig = Field(description="the training config of every round (qdyn template): model, seed data "
                                           "(data.path), epochs; uncertainty must be ensemble or laplace")
    labeler: LabelerConfig = Field(default_factory=LabelerConfig, description="reference method of new labels")
    explore: ExploreConfig = Field(default_factory=ExploreConfig, description="MD with the watchdog")
    select: SelectConfig = Field(default_factory=SelectConfig, description="which frames are labelled")
    warm_start_epochs: Optional[int] = Field(
        None, ge=1, description="epochs of the warm-started rounds (1, 2, ...), trained end-to-end without the staged "
                                "pretraining (their classical branch is already fitted); None: train.epochs and "
                                "train.staged as round 0")
    max_rounds: int = Field(5, ge=1, description="rounds of explore → select → label → retrain at most")
    n_test: int = Field(20, ge=1, description="frames of the seed data held out as the fixed test set of every "
                                              "round")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="fraction of the training pool used for validation "
                                                             "(early stopping, calibration)")
    split_seed: int = Field(0, description="seed of the held-out test split of the seed data")
    test_data: Optional[str] = Field(
        None, description="a second held-out set (a file or shipped:NAME, read with train.data's units and keys), "
                          "never trained on, tested every round beside the n_test seed frames: e.g. frames of the "
                          "explored system alone when the seed mixes it with others (a box beside clusters)")

    @model_validator(mode="after")
    def _needs_uncertainty(self):
        if self.train.uncertainty.method == "none":
            raise ValueError("train.uncertainty.method must be ensemble or laplace: the loop selects by uncertainty "
                             "and the watchdog needs it")
        return self


# what a resumed run may change: how later rounds explore, select and train, never what the
# model, its data, the test set or the reference method are (their rounds would not compare);
# test_data only adds a report (each round records the set it was tested on)
RESUMABLE_FIELDS = ("max_rounds", "explore", "select", "warm_start_epochs", "test_data", "labeler.workers",
                    "labeler.cache_dir",
                    "train.epochs", "train.pretrain_epochs", "train.staged", "train.optim", "train.batch_size",
                    "train.checkpoint_every", "train.early_stopping_patience")
FIXED_EXPLORE_FIELDS = ("explore.structure", "explore.frame")  # the start of every round's MD


def changed_fixed_fields(before: dict, now: dict) -> list[str]:
    """Dotted keys where two resolved configs differ outside :data:`RESUMABLE_FIELDS`."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    a, b = flat(before), flat(now)
    free = lambda k: (any(k == f or k.startswith(f + ".") for f in RESUMABLE_FIELDS)  # noqa: E731
                      and not any(k == f for f in FIXED_EXPLORE_FIELDS))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not free(k))


def load_learn_config(path: Path) -> LearnConfig:
    """Read and validate ``path`` (YAML). Raises :class:`ConfigError` naming file and key."""
    return validate_config(LearnConfig, read_yaml_mapping(path, "a learn "), str(path), "learn ")
