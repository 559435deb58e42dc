"""Training a model: settings, state and step, the loop around them.

config      `TrainConfig`: every setting of a run, declared once (the
            model's own settings nested as its ModelConfig)
trainer     `Trainer`: the run's model, optimizer, schedule, checkpoints and
            its step; warm starts
loop        `train`: the loop, budgets, rollbacks, logs, the final model
validation  validation by real coding (also the campaign's diagnosis)
schedules   learning rate, divergence guard, weight average
distribute  tf.distribute: strategies, replicas, workers

The trainer and the loop use only the CompressionModel interface: no module
here imports a model family.
"""

from balle.training.config import TrainConfig
from balle.training.loop import WorkerLostError
from balle.training.loop import finalize_only
from balle.training.loop import portable_path
from balle.training.loop import train
from balle.training.trainer import Trainer
from balle.training.validation import coded_figures
from balle.training.validation import reconstruction_pairs
from balle.training.validation import validate

__all__ = [
    "TrainConfig", "WorkerLostError", "finalize_only", "portable_path",
    "train", "Trainer", "coded_figures", "reconstruction_pairs", "validate",
]
