"""Observation normalisation for any agent, as a transformation of the agent itself
(`normalize_observations(agent) -> agent`), so it works the same on both loops and for
every agent, and its statistics live in the agent state: checkpoints resume them exactly,
and `load_policy`, `enjoy` and evaluation normalise as training did, with nothing to carry
beside the policy.

`act` feeds the agent `clip((obs - mean) / sqrt(var + eps), +-clip)` under the running
statistics in the state. `learn` normalises the batch with the same statistics its rollout
was acted with (so an on-policy agent's stored log-probabilities still match its policy),
learns, and only then folds the batch's raw observations into the statistics: a count, a
mean and a variance per observation feature (`purerl.running_stats`), merged exactly over
the batch and, when made with an `axis_name`, over every device's shard. A replay agent
updates them from its sampled batches, so they follow what it replays.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
from flax import struct
from purerl.core import Agent, EnvSpec, Transition
from purerl.replay.base import Sample
from purerl.running_stats import RunningStats, normalized, stats_init, stats_update


@struct.dataclass
class NormalizedState:
    agent_state: Any  # The wrapped agent's state.
    obs_stats: RunningStats


def normalize_observations(agent: Agent, axis_name: str | None = None, clip: float = 10.0) -> Agent:
    """`agent` acting and learning on normalised observations (see the module doc).

    Args:
      agent: any agent whose observations are arrays (a `Box` observation space).
      axis_name: the named device axis its learner runs over (statistics merge over it).
      clip: normalised observations are clipped to `[-clip, clip]`.
    """

    def init(key: jax.Array, spec: EnvSpec) -> NormalizedState:
        space = spec.observation_space
        if not isinstance(space, gymnasium.spaces.Box):
            raise ValueError(
                f"--normalize-observations needs array observations (a Box space); got {space}."
            )
        return NormalizedState(agent.init(key, spec), stats_init(tuple(space.shape)))

    def act(
        state: NormalizedState, carry: Any, obs: Any, key: jax.Array, deterministic: bool = False
    ) -> Any:
        obs = normalized(state.obs_stats, obs, clip)
        return agent.act(state.agent_state, carry, obs, key, deterministic)

    def learn(state: NormalizedState, batch: Any, key: jax.Array) -> tuple[NormalizedState, Any]:
        items = batch.items if isinstance(batch, Sample) else batch
        if not isinstance(items, Transition):
            raise ValueError(
                "--normalize-observations needs batches of Transitions; got "
                f"{type(items).__name__}."
            )
        scaled = items._replace(
            obs=normalized(state.obs_stats, items.obs, clip),
            next_obs=normalized(state.obs_stats, items.next_obs, clip),
        )
        batch = batch._replace(items=scaled) if isinstance(batch, Sample) else scaled
        agent_state, metrics = agent.learn(state.agent_state, batch, key)
        stats = stats_update(state.obs_stats, items.obs, axis_name)
        return NormalizedState(agent_state, stats), metrics

    return Agent(init, act, learn, agent.initial_carry)
