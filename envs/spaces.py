"""Conversions to Gymnasium spaces, the one space type purerl agents see."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np


def from_gymnax(space: Any) -> gymnasium.spaces.Space:
    """Converts a gymnax space (Discrete, Box, Dict, Tuple) to its Gymnasium twin."""
    from gymnax.environments import spaces as gx

    if isinstance(space, gx.Discrete):
        return gymnasium.spaces.Discrete(int(space.n))
    if isinstance(space, gx.Box):
        dtype = np.dtype(space.dtype)
        shape = tuple(int(d) for d in space.shape)
        low = np.broadcast_to(np.asarray(space.low, dtype=dtype), shape)
        high = np.broadcast_to(np.asarray(space.high, dtype=dtype), shape)
        return gymnasium.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if isinstance(space, gx.Dict):
        return gymnasium.spaces.Dict({k: from_gymnax(v) for k, v in space.spaces.items()})
    if isinstance(space, gx.Tuple):
        return gymnasium.spaces.Tuple(tuple(from_gymnax(s) for s in space.spaces))
    raise TypeError(f"Cannot convert the gymnax space {space!r} to a Gymnasium space.")
