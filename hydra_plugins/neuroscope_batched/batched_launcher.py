"""``hydra/launcher=batched``: a sweep's jobs trained as ensembles in this one process.

Hydra's plugin discovery imports this module for every Hydra application in the environment,
so it stays light: the config node and a thin Launcher; NeuroScope (and torch) is imported
only when a sweep is launched (neuroscope.sweep.batched does the work).
"""
# no `from __future__ import annotations`: Hydra loads this module without sys.modules, where
# dataclass cannot read string annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.neuroscope_batched.batched_launcher.BatchedLauncher"
    # the most jobs one ensemble trains at once; 0: no cap (every job that can batch, as far as
    # the free memory allows: a group larger than that is split into ensembles that fit)
    max_batch: int = 0


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf, provider="neuroscope")


class BatchedLauncher(Launcher):
    """Composes every job, groups those that can train as one ensemble
    (``neuroscope.batching.group_by_key``) and trains each group with one training loop, leaving
    each job's folder as Hydra's basic launcher would."""

    def __init__(self, max_batch: int = 0) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.config: Optional[Any] = None
        self.task_function: Optional[Any] = None
        self.hydra_context: Optional[Any] = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        # the sweeper checks every job composes before launching it: through the launcher's
        # composer (neuroscope.sweep.batched.ComposingLoader), so that each is composed once
        from neuroscope.sweep.batched import composer_of

        self.composer = None
        composer_of(self)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from neuroscope.sweep.batched import launch

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        return launch(self, job_overrides, initial_job_idx)
