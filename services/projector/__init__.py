"""The projector process (``coreline projector``, ``coreline replay``): reads the event
store, folds it with ``services.projections``, lets ``services.alerts`` judge each fold,
and commits the read models with their checkpoint; beside it, the notifier process
(``run_notifier``) that delivers the alerts, and the transparency log's keeper
(``run_log_keeper``) that logs every stored event and signs and publishes checkpoints.

It sits above the pure packages it wires, so they never import each other sideways:
``services.projections`` knows nothing of alerts or delivery, and ``services.alerts``
nothing of this process.
"""

from services.projector.checkpoint_publisher import CHECKPOINT_TOPIC, CheckpointPublisher
from services.projector.folder import Folder
from services.projector.log_process import run_log_keeper
from services.projector.notifier_process import run_notifier
from services.projector.replay import ReplayResult, replay
from services.projector.runner import PROJECTOR, Projector, tune_collector
from services.projector.settings import ProjectorSettings

__all__ = [
    "CHECKPOINT_TOPIC",
    "PROJECTOR",
    "CheckpointPublisher",
    "Folder",
    "Projector",
    "ProjectorSettings",
    "ReplayResult",
    "replay",
    "run_log_keeper",
    "run_notifier",
    "tune_collector",
]
