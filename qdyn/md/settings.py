"""What an MD run is asked to do, in two frozen objects shared by the library and ``qdyn md``.

:class:`MDSettings` holds the physics (ensemble, time step, steps, temperatures, thermostat
and barostat, replicas, the blow-up threshold); it is a pydantic model with
``extra="forbid"`` and every default declared here once: :class:`qdyn.md.config.MDConfig`
(the ``qdyn md --config`` file) extends it. :class:`MDOutput` holds what is written and
reported (output directory, formats, stride, block size, checkpoints, restart, progress).

Example:
    >>> from qdyn.md.settings import MDOutput, MDSettings
    >>> settings = MDSettings(ensemble="nve", dt_fs=0.5, n_steps=200)
    >>> settings.temperature_K, MDOutput().stride
    (300.0, 10)
    >>> MDSettings(ensemble="nvt", dt_fs=0.5, n_steps=10, temperature_K=1e6)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qdyn.validation.QdynInputError: MDSettings: temperature_K: 1e+06 K is beyond any chemistry (limit 50000 K) ...
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..validation import QdynInputError

Ensemble = Literal["nve", "nvt", "nvt-langevin", "nvt-nose-hoover", "npt"]


class MDSettings(BaseModel):
    """The physics of an MD run, in qdyn units (fs, K, bar). Frozen; validated on creation.

    Bad values raise one :class:`~qdyn.validation.QdynInputError` naming every offending
    field (a config file reports them through :func:`qdyn.train.config.validate_config`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ensemble: Ensemble = Field("nvt", description="nve; nvt (= nvt-langevin); nvt-nose-hoover; npt (periodic "
                                                  "structures, dense models)")
    dt_fs: float = Field(0.5, gt=0, le=5.0, description="time step, fs")
    n_steps: int = Field(2000, gt=0, description="steps to run; a multiple of the output stride")
    temperature_K: float = Field(300.0, ge=0, description="thermostat target and initial-velocity temperature, K")
    initial_temperature_K: Optional[float] = Field(None, ge=0, description="temperature of the initial "
                                                   "Maxwell–Boltzmann velocities, K (default temperature_K)")
    replicas: int = Field(1, ge=1, description="independent replicas run at once (vmapped)")
    friction_per_fs: float = Field(0.01, gt=0, description="Langevin friction, 1/fs")
    tau_fs: float = Field(100.0, gt=0, description="Nosé–Hoover thermostat time constant, fs (nvt-nose-hoover, npt)")
    pressure_bar: Optional[float] = Field(None, description="NPT target pressure, bar (npt only)")
    barostat_tau_fs: float = Field(1000.0, gt=0, description="NPT barostat time constant, fs")
    remove_rotation: bool = Field(False, description="remove rigid rotation from the initial velocities (free "
                                                     "molecules)")
    max_temperature_K: Optional[float] = Field(None, gt=0, description="blow-up threshold on any replica's "
                                               "temperature, K (default max(20 T, 2000 K))")
    check_plausibility: bool = Field(True, description="refuse temperatures and structures outside any chemistry "
                                                       "(qdyn.data.plausibility)")

    def __init__(self, **fields):
        try:
            super().__init__(**fields)
        except ValidationError as exc:  # one line naming every field, the library's error type
            raise QdynInputError(_problems(type(self).__name__, exc)) from None

    @model_validator(mode="after")
    def _consistent(self):
        if (self.ensemble == "npt") != (self.pressure_bar is not None):
            raise ValueError("pressure_bar [bar] is needed with ensemble npt and only there")
        if self.check_plausibility:
            from ..data.plausibility import check_temperature

            check_temperature(self.temperature_K, where="temperature_K")
            if self.initial_temperature_K is not None:
                check_temperature(self.initial_temperature_K, where="initial_temperature_K")
        return self

    def md_settings(self) -> "MDSettings":
        """Just the :class:`MDSettings` part (of a config class that extends it)."""
        return MDSettings(**self.model_dump(include=set(MDSettings.model_fields)))

    def replace(self, **changes) -> "MDSettings":
        """A copy with ``changes``, validated like a new one (unknown names are refused)."""
        return type(self)(**{**self.model_dump(exclude_unset=True), **changes})

    @property
    def start_temperature_K(self) -> float:
        """Temperature of the initial velocities [K]."""
        return self.temperature_K if self.initial_temperature_K is None else self.initial_temperature_K

    @property
    def blow_up_temperature_K(self) -> float:
        """The blow-up threshold [K]: ``max_temperature_K`` or ``max(20 T, 2000 K)``."""
        if self.max_temperature_K is not None:
            return self.max_temperature_K
        return max(20.0 * max(self.start_temperature_K, self.temperature_K), 2000.0)


def _problems(what: str, exc: ValidationError) -> str:
    def one(err) -> str:
        msg = err["msg"].removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err["loc"])
        return msg if not loc or msg.startswith(f"{loc}:") else f"{loc}: {msg}"

    return f"{what}: " + "; ".join(one(e) for e in exc.errors())


def print_progress(info: dict) -> None:
    """The default progress report: one line on stderr per report."""
    print(f"step {info['step']:>9d}  t = {info['time_ps']:9.3f} ps  T = {info['temperature_K']:8.1f} K  "
          f"ΔE_tot = {info['drift_eV']:+.2e} eV  {info['ns_per_day']:8.2f} ns/day", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class MDOutput:
    """What an MD run writes and reports.

    Attributes:
        out_dir: where trajectories, checkpoints and ``md.json`` go (None: nothing written).
        trajectory_formats: any of "extxyz", "h5md".
        stride: steps between sampled frames.
        frames_per_block: frames per compiled block (host checks happen between blocks).
        store_replicas: how many replicas (the first ones) are written and kept in memory.
        checkpoint_every: blocks between checkpoints.
        restart: continue from ``out_dir/checkpoint.npz``.
        progress: callback with a dict (step, n_steps, time_ps, temperature_K, drift_eV,
            ns_per_day), None for silence; default: a line on stderr.
        progress_every_s: seconds between progress calls.
        provenance: JSON fields recorded in ``md.json`` (e.g. the model's run directory).
    """

    out_dir: Optional[Union[str, Path]] = None
    trajectory_formats: Sequence[str] = ("extxyz", "h5md")
    stride: int = 10
    frames_per_block: int = 10
    store_replicas: int = 1
    checkpoint_every: int = 10
    restart: bool = False
    progress: Optional[Callable[[dict], None]] = print_progress
    progress_every_s: float = 5.0
    provenance: Optional[dict] = None

    def __post_init__(self):
        if int(self.stride) < 1:
            raise QdynInputError(f"stride must be ≥ 1 step, got {self.stride}")
        bad_formats = set(self.trajectory_formats) - {"extxyz", "h5md"}
        if bad_formats:
            raise QdynInputError(f"unknown trajectory formats {sorted(bad_formats)}; choose extxyz and/or h5md")
        if self.restart and self.out_dir is None:
            raise QdynInputError("restart=True needs out_dir (where checkpoint.npz is)")

    @property
    def path(self) -> Optional[Path]:
        """``out_dir`` as a Path (None: nothing written)."""
        return None if self.out_dir is None else Path(self.out_dir)
