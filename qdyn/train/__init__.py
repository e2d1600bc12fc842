"""Training: losses, optax chains, checkpoints, metrics and the loop."""

from .config import ConfigError, TrainConfig, load_config, parse_config, template_yaml
from .trainer import TrainResult, evaluate, load_run, predict, train

__all__ = ["TrainConfig", "ConfigError", "load_config", "parse_config", "template_yaml", "train", "TrainResult",
           "evaluate", "load_run", "predict"]
