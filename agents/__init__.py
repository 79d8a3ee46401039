"""purerl agents: each module's `make(config)` returns an `Agent(init, act, learn)`; the
registry (`purerl.agents.registry`) names them for the scripts, `load_policy` and `enjoy`."""

from purerl.core import Agent, EnvSpec, Transition, feed_forward

__all__ = ["Agent", "EnvSpec", "Transition", "feed_forward"]
