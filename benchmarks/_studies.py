"""Shared plumbing of the paper's studies (benchmarks/study_*.py): one training run as a
table row, the machine load beside it, and a markdown table writer.

Every study trains through :func:`qdyn.train.train` (the same code path as ``qdyn train``),
so a row's settings are a training config and can be re-run from its JSON record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from qdyn.train import parse_config, train


def load_average() -> list[float]:
    """1/5/15-minute load averages (the machine is shared: timings need them beside)."""
    return [round(x, 2) for x in os.getloadavg()]


def train_config(model: dict, data: dict, *, epochs: int, lr: float = 2e-2, force_weight: float = 1.0,
                 staged: bool = True, seed: int = 0, batch_size: int = 32, schedule: str = "cosine",
                 normalization: str = "species_lstsq") -> dict:
    """The training config of one study row, in the settings of benchmarks/accuracy.py
    (Adam, cosine decay to 1 %, E + F loss, staged for models with a circuit)."""
    quantum = model["family"] in ("sivqlm", "generic", "hybrid")
    staged = staged and quantum
    return {
        "model": model, "data": data, "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "optim": {"learning_rate": lr, "schedule": schedule, "final_lr_fraction": 0.01},
        "loss": {"energy_weight": 1.0, "force_weight": force_weight, "normalization": normalization},
        "staged": staged, "pretrain_epochs": max(1, epochs // 10) if staged else 0,
        "checkpoint_every": max(1, epochs // 4),
    }


def fit(config: dict, out: Path, *, dataset=None) -> dict:
    """Train one config (``dataset``: an already loaded Dataset, e.g. with noisy labels);
    returns its test metrics, parameter count, wall time and the load it ran under."""
    return fit_result(config, out, dataset=dataset)[0]


def fit_result(config: dict, out: Path, *, dataset=None):
    """(:func:`fit`'s row, the :class:`~qdyn.train.trainer.TrainResult`) of one config."""
    cfg = parse_config(config)
    t0 = time.perf_counter()
    res = train(cfg, out, progress=False, data=dataset)
    seconds = time.perf_counter() - t0
    test = res.metrics["test"]
    return {"n_params": res.metrics["n_params"], "train_seconds": round(seconds, 1), "load": load_average(),
            "energy_mae_meV": test["energy_mae_meV"], "force_mae_meV_per_A": test["force_mae_meV_per_A"],
            "energy_rmse_meV": test["energy_rmse_meV"], "force_rmse_meV_per_A": test["force_rmse_meV_per_A"],
            "config": cfg.model_dump(mode="json")}, res


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
