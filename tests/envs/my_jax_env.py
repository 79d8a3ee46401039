"""A user's own JAX environment, for `make("tests.envs.my_jax_env:Corridor")`-style tests."""

import gymnasium
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class CorridorParams:
    length: int = 5
    max_steps: int = 20


@struct.dataclass
class CorridorState:
    position: jax.Array
    time: jax.Array


class Corridor:
    """Walk right (action 1) to the end of a corridor for a reward of 1."""

    @property
    def default_params(self) -> CorridorParams:
        return CorridorParams()

    def reset(self, key, params):
        state = CorridorState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        return self._obs(state, params), state

    def step(self, key, state, action, params):
        position = jnp.clip(state.position + 2 * action - 1, 0, params.length)
        time = state.time + 1
        terminated = position == params.length
        truncated = (time >= params.max_steps) & ~terminated
        next_state = CorridorState(position, time)
        obs_st = self._obs(next_state, params)
        done = terminated | truncated
        obs_re, state_re = self.reset(key, params)
        obs = jnp.where(done, obs_re, obs_st)
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state_re, next_state)
        reward = terminated.astype(jnp.float32)
        return obs, state, reward, terminated, truncated, {"final_observation": obs_st}

    def _obs(self, state, params):
        return jax.nn.one_hot(state.position, params.length + 1)

    def observation_space(self, params):
        return gymnasium.spaces.Box(0.0, 1.0, (params.length + 1,), jnp.float32)

    def action_space(self, params):
        return gymnasium.spaces.Discrete(2)
