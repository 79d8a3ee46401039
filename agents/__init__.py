"""purerl agents: each module's `make(config)` returns an `Agent(init, act, learn)`."""

from purerl.agents.base import Agent, EnvSpec

__all__ = ["Agent", "EnvSpec"]
