"""Pgx games (`--env pgx:ID`: `tic_tac_toe`, `connect_four`, `othello`, `2048`, ...) as
single-agent environments behind purerl's protocol, on the device loop. Pgx is an optional
extra: `pip install -e ".[pgx]"`.

The agent plays one side of a two-player game against a uniformly random opponent that
picks among its legal moves; the opponent's moves happen inside `step` (and inside `reset`
when it opens), so every observation is one where the agent is to move, seen from its side.
The agent's side is drawn at random each episode (`--env-params agent_player=0` or `1` fixes
it). The reward is the game's reward to the agent (+1 win, -1 loss, 0 draw at the end for
most games); a game's end is `terminated`, Pgx's step limit `truncated`. The observation is
flattened into one float32 vector with the legal-action mask last (`EnvSpec.action_mask`),
which purerl's discrete agents honour. An illegal move loses the game for the one who
made it, as Pgx rules. One-player games (`2048`, the MinAtar games) have no opponent.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from purerl.envs.base import EnvParams
from purerl.envs.suites import (
    DiscreteSuiteEnv,
    flat_observation,
    import_suite,
    static_params,
    unknown_id,
)

PREFIX = "pgx"
_RANDOM_SIDE = -1


@struct.dataclass
class PgxState:
    game: Any  # pgx.State
    player: jax.Array  # [] int32, the side the agent plays.


@functools.cache
def _pgx(name: str) -> Any:
    import pgx

    return pgx.make(name)


def random_legal(key: jax.Array, legal: jax.Array) -> jax.Array:
    """A uniformly random action among the `legal` ones `[A]` (bool)."""
    return jax.random.categorical(key, jnp.where(legal, 0.0, -jnp.inf)).astype(jnp.int32)


class PgxEnv(DiscreteSuiteEnv):
    """A Pgx game as a single-agent, auto-resetting purerl environment: the agent against a
    random opponent."""

    prefix = PREFIX
    action_mask = True

    def __init__(self, name: str, params: Any):
        self.name, self._default, self.env = name, params, _pgx(name)

    @property
    def default_params(self) -> Any:
        return self._default

    def num_actions(self, params: EnvParams) -> int:
        return int(self.env.num_actions)

    def _opponent(self, key: jax.Array, state: PgxState) -> tuple[PgxState, jax.Array]:
        """The opponent's moves until the agent is to move or the game ends, and the reward
        they bring the agent."""

        def opponent_to_move(carry: tuple[Any, jax.Array, jax.Array]) -> jax.Array:
            game = carry[0]
            over = jnp.logical_or(game.terminated, game.truncated)
            return jnp.logical_and(~over, game.current_player != state.player)

        def move(carry: tuple[Any, jax.Array, jax.Array]) -> tuple[Any, jax.Array, jax.Array]:
            game, reward, key = carry
            key, pick, chance = jax.random.split(key, 3)
            game = self.env.step(game, random_legal(pick, game.legal_action_mask), chance)
            return game, reward + game.rewards[state.player], key

        carry = (state.game, jnp.zeros((), jnp.float32), key)
        game, reward, _ = jax.lax.while_loop(opponent_to_move, move, carry)
        return state.replace(game=game), reward

    def _observe(self, state: PgxState) -> jax.Array:
        return flat_observation([state.game.observation], state.game.legal_action_mask)

    def _reset(self, key: jax.Array, params: Any) -> tuple[PgxState, jax.Array]:
        init_key, side_key, opponent_key = jax.random.split(key, 3)
        sides = self.env.num_players
        if params.agent_player not in (_RANDOM_SIDE, *range(sides)):
            raise ValueError(
                f"pgx:{self.name} has {sides} side(s); agent_player must be one of "
                f"{', '.join(map(str, range(sides)))} or -1 (a side drawn each episode); got "
                f"{params.agent_player}."
            )
        drawn = jax.random.randint(side_key, (), 0, sides, jnp.int32)
        player = drawn if params.agent_player == _RANDOM_SIDE else jnp.int32(params.agent_player)
        state, _ = self._opponent(opponent_key, PgxState(self.env.init(init_key), player))
        return state, self._observe(state)

    def _step(
        self, key: jax.Array, state: PgxState, action: jax.Array, params: Any
    ) -> tuple[PgxState, jax.Array, jax.Array, jax.Array, jax.Array]:
        step_key, opponent_key = jax.random.split(key)
        game = self.env.step(state.game, action, step_key)
        reward = game.rewards[state.player]
        state, answer = self._opponent(opponent_key, state.replace(game=game))
        return (
            state,
            self._observe(state),
            reward + answer,
            state.game.terminated,
            state.game.truncated,
        )

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        size = self.observation_example(params).shape
        return gymnasium.spaces.Box(-np.inf, np.inf, size, np.float32)


def make_pgx(name: str, agent_player: int = _RANDOM_SIDE) -> tuple[PgxEnv, Any]:
    """Pgx's game `name` against a random opponent; the agent plays side `agent_player`
    (0 moves first) or, with -1, a side drawn each episode."""
    pgx = import_suite("pgx", PREFIX, name, "pgx")
    known = list(pgx.available_envs())
    if name not in known:
        raise unknown_id("Pgx", PREFIX, name, known)
    params = static_params("PgxParams", {"agent_player": int(agent_player)})
    return PgxEnv(name, params), params
