"""Replay settings shared by every replay agent's config (DQN, SAC, ...), and the data path
they build: uniform or prioritised, one shard per device."""

from __future__ import annotations

import dataclasses

from purerl.core import per_device, require_positive_fields
from purerl.replay.base import DataPath
from purerl.replay.prioritized import prioritized_replay
from purerl.replay.uniform import uniform_replay


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplayOptions:
    """Replay settings; an agent's config inherits them (and may change the defaults).

    Attributes:
      buffer_size: replay capacity in transitions, over all devices.
      batch_size: transitions per gradient step, over all devices.
      learning_starts: environment steps (over all devices) before learning begins.
      prioritized: prioritised replay (Schaul et al., 2016) with |TD error| priorities.
      priority_alpha: priority exponent.
      priority_beta_start: importance-weight exponent at the start, annealed to 1 over the
        run's gradient steps.
      priority_eps: added to |TD error|.
    """

    buffer_size: int = 10_000
    batch_size: int = 128
    learning_starts: int = 10_000
    prioritized: bool = False
    priority_alpha: float = 0.6
    priority_beta_start: float = 0.4
    priority_eps: float = 1e-6

    def check_replay(self) -> None:
        """Clear errors for replay settings that cannot work."""
        name = type(self).__name__
        require_positive_fields(self, "buffer_size", "batch_size")
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"{name}.batch_size ({self.batch_size}) is larger than buffer_size "
                f"({self.buffer_size}); raise buffer_size or lower batch_size."
            )
        if self.learning_starts > self.buffer_size:
            raise ValueError(
                f"{name}.learning_starts ({self.learning_starts}) exceeds buffer_size "
                f"({self.buffer_size}): the buffer could never hold enough to start learning."
            )

    def replay(
        self, num_devices: int, gradient_steps: int, sequence_length: int | None = None
    ) -> DataPath:
        """This device's data path: its share of the capacity and of each batch.

        Args:
          num_devices: devices the learner is data-parallel over.
          gradient_steps: gradient steps in the run (prioritised replay anneals beta to 1
            over them).
          sequence_length: None to sample single transitions, `L` for windows of `L` steps.
        """
        batch_size = per_device(self.batch_size, "--batch-size", num_devices)
        capacity = per_device(self.buffer_size, "--buffer-size", num_devices)
        min_size = max(batch_size, self.learning_starts // num_devices)
        if not self.prioritized:
            return uniform_replay(capacity, batch_size, min_size, sequence_length=sequence_length)
        return prioritized_replay(
            capacity,
            batch_size,
            min_size,
            alpha=self.priority_alpha,
            beta_start=self.priority_beta_start,
            beta_steps=max(1, gradient_steps),
            eps=self.priority_eps,
            sequence_length=sequence_length,
        )
