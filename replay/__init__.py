"""Jittable replay buffers whose whole state is a pytree."""

from purerl.replay.uniform import Buffer, BufferState, make_uniform

__all__ = ["Buffer", "BufferState", "make_uniform"]
