"""The training engine: state, the one update contract, two parallel back ends, loop, checkpoints."""

from genjax.train.checkpoint import Checkpointer, CheckpointError, DamagedCheckpointError, state_digest
from genjax.train.loop import (
    MetricsWriter,
    TrainingDivergedError,
    TrainResult,
    read_metrics,
    train,
)
from genjax.train.optim import make_optimizer
from genjax.train.state import TrainState, create_train_state, num_params
from genjax.train.step import (
    BACKENDS,
    LossUpdate,
    MultiPlayerUpdate,
    TrainStep,
    Update,
    UpdateBuilder,
    build_train_step,
    example_keys,
    make_update,
)

__all__ = [
    "BACKENDS",
    "CheckpointError",
    "Checkpointer",
    "DamagedCheckpointError",
    "LossUpdate",
    "MetricsWriter",
    "MultiPlayerUpdate",
    "TrainResult",
    "TrainState",
    "TrainStep",
    "TrainingDivergedError",
    "Update",
    "UpdateBuilder",
    "build_train_step",
    "create_train_state",
    "example_keys",
    "make_optimizer",
    "make_update",
    "num_params",
    "read_metrics",
    "state_digest",
    "train",
]
