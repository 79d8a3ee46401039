"""Evaluation episodes: a deterministic policy on fresh environment instances, fully jitted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from purerl.envs.base import Environment, EnvParams
from purerl.envs.wrappers import EpisodeStatistics, VecEnv

Policy = Callable[[Any, jax.Array], jax.Array]  # (obs[B, ...], key) -> action[B]


def evaluate(
    policy: Policy,
    env: Environment,
    env_params: EnvParams,
    key: jax.Array,
    num_episodes: int,
    max_steps: int = 100_000,
) -> tuple[jax.Array, jax.Array]:
    """Runs `num_episodes` episodes in parallel, one per env copy, each to its first end.

    Jittable (with `policy`, `env`, `num_episodes` and `max_steps` static).

    Returns:
      `(returns[num_episodes], finished[num_episodes])`: each episode's return, and whether
      it ended within `max_steps` steps (an unfinished one holds its return so far).
    """
    vec = VecEnv(EpisodeStatistics(env), num_episodes)
    reset_key, key = jax.random.split(key)
    obs, state = vec.reset(reset_key, env_params)
    zeros = jnp.zeros((num_episodes,), jnp.float32)
    done = jnp.zeros((num_episodes,), bool)

    def cond(carry):
        t, done = carry[0], carry[4]
        return (t < max_steps) & ~jnp.all(done)

    def body(carry):
        t, key, obs, state, done, returns = carry
        key, act_key, step_key = jax.random.split(key, 3)
        action = policy(obs, act_key)
        obs, state, _, _, _, info = vec.step(step_key, state, action, env_params)
        running = info["episode_return"]
        returns = jnp.where(done, returns, running)
        done = done | info["episode_done"]
        return t + 1, key, obs, state, done, returns

    carry = (jnp.zeros((), jnp.int32), key, obs, state, done, zeros)
    _, _, _, _, done, returns = jax.lax.while_loop(cond, body, carry)
    return returns, done
