"""Active learning: explore with the MD watchdog, select uncertain and diverse frames, label
them, retrain warm-started, until the MD survives (docs/active_learning.md)."""

from .config import LearnConfig, load_learn_config
from .loop import run_learning
from .select import farthest_points, frame_descriptors, select_random, select_uncertain

__all__ = ["LearnConfig", "farthest_points", "frame_descriptors", "load_learn_config", "run_learning",
           "select_random", "select_uncertain"]
