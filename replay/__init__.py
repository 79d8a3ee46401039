"""Data paths (how experience reaches `learn`) and jittable replay buffers whose whole state
is a pytree: the on-policy rollout, uniform replay and prioritised replay share one
interface, `DataPath`."""

from purerl.replay.base import DataPath, Sample, Schedule, on_policy
from purerl.replay.prioritized import prioritized_replay
from purerl.replay.uniform import BufferState, uniform_replay

__all__ = [
    "BufferState",
    "DataPath",
    "Sample",
    "Schedule",
    "on_policy",
    "prioritized_replay",
    "uniform_replay",
]
