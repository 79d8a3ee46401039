"""Evaluation episodes: a deterministic policy on fresh environment instances, fully jitted
for JAX environments, stepped on the host for Python ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import distrax
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl.core import Agent
from purerl.envs.base import Environment, EnvParams
from purerl.envs.wrappers import EpisodeStatistics, VecEnv


class Policy(NamedTuple):
    """A policy that carries its recurrent state (empty for feed-forward agents).

    Attributes:
      step: `(carry, obs[B, ...], key) -> (action[B], carry)`.
      initial_carry: `(batch_size) -> carry` at the start of an episode.
    """

    step: Callable[[Any, Any, jax.Array], tuple[jax.Array, Any]]
    initial_carry: Callable[[int], Any]


class Episodes(NamedTuple):
    """Evaluation episodes, one entry each.

    Attributes:
      returns: the episode's return.
      finished: whether it ended within the step limit of the evaluation.
      lengths: its steps.
      truncated: whether it ended by truncation (a time limit), not a true terminal.
    """

    returns: Any
    finished: Any
    lengths: Any
    truncated: Any


def stateless(fn: Callable[[Any, jax.Array], jax.Array]) -> Policy:
    """A `Policy` from a plain `fn(obs[B, ...], key) -> action[B]`."""
    return Policy(lambda carry, obs, key: (fn(obs, key), carry), lambda batch_size: ())


def greedy_policy(agent: Agent, state: Any) -> Policy:
    """The agent's deterministic policy (`act(..., deterministic=True)`) at `state`."""

    def step(carry: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, Any]:
        action, carry, _ = agent.act(state, carry, obs, key, deterministic=True)
        return action, carry

    return Policy(step, agent.initial_carry)


def check_eval_epsilon(epsilon: float, action_space: Any) -> int:
    """The number of actions an evaluation epsilon picks from (0 for `epsilon` 0), or a
    clear error where the action space is not discrete."""
    if not epsilon:
        return 0
    if not isinstance(action_space, gymnasium.spaces.Discrete) or int(action_space.start) != 0:
        raise ValueError(
            f"--eval-epsilon {epsilon} picks random actions from a discrete action space "
            f"(gymnasium.spaces.Discrete from 0), but this environment's is {action_space}; "
            "leave --eval-epsilon at 0 (greedy evaluation) for it."
        )
    return int(action_space.n)


def epsilon_greedy(policy: Policy, epsilon: float, action_space: Any) -> Policy:
    """`policy` acting uniformly at random with probability `epsilon` (a discrete action
    space); `policy` itself, with the same keys, for `epsilon` 0."""
    n = check_eval_epsilon(epsilon, action_space)
    if not n:
        return policy

    def step(carry: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, Any]:
        key, explore_key = jax.random.split(key)
        action, carry = policy.step(carry, obs, key)
        # The greedy action as one-hot preferences: distrax's epsilon-greedy over them.
        explore = distrax.EpsilonGreedy(jax.nn.one_hot(action, n), epsilon)
        return explore.sample(seed=explore_key).astype(action.dtype), carry

    return Policy(step, policy.initial_carry)


def evaluate(
    policy: Policy,
    env: Environment,
    env_params: EnvParams,
    key: jax.Array,
    num_episodes: int,
    max_steps: int = 100_000,
) -> Episodes:
    """Runs `num_episodes` episodes in parallel, one per env copy, each to its first end.

    Jittable (with `policy`, `env`, `num_episodes` and `max_steps` static).

    Returns:
      `Episodes` of `[num_episodes]` arrays (an episode unfinished after `max_steps` steps
      holds its return and length so far).
    """
    vec = VecEnv(EpisodeStatistics(env), num_episodes)
    reset_key, key = jax.random.split(key)
    obs, state = vec.reset(reset_key, env_params)
    zeros = jnp.zeros((num_episodes,), jnp.float32)
    done = jnp.zeros((num_episodes,), bool)

    def cond(loop):
        t, done = loop[0], loop[5]
        return (t < max_steps) & ~jnp.all(done)

    def body(loop):
        # Each env stops counting at its first episode end, so its carry is never reset.
        t, key, obs, state, carry, done, returns, lengths, truncated = loop
        key, act_key, step_key = jax.random.split(key, 3)
        action, carry = policy.step(carry, obs, act_key)
        obs, state, _, terminated, cut, info = vec.step(step_key, state, action, env_params)
        returns = jnp.where(done, returns, info["episode_return"])
        lengths = jnp.where(done, lengths, info["episode_length"])
        truncated = jnp.where(done, truncated, cut & ~terminated)
        done = done | info["episode_done"]
        return t + 1, key, obs, state, carry, done, returns, lengths, truncated

    loop = (
        jnp.zeros((), jnp.int32),
        key,
        obs,
        state,
        policy.initial_carry(num_episodes),
        done,
        zeros,
        jnp.zeros((num_episodes,), jnp.int32),
        done,
    )
    *_, done, returns, lengths, truncated = jax.lax.while_loop(cond, body, loop)
    return Episodes(returns, done, lengths, truncated)


def evaluate_host(
    policy: Policy,
    env_name: str,
    key: jax.Array,
    num_episodes: int,
    seed: int,
    max_steps: int = 100_000,
    render_to: str | None = None,
) -> Episodes:
    """`evaluate` for a host (Python) environment: `num_episodes` fresh copies of
    `env_name` (seeded `EVAL_SEED_OFFSET + seed + i`), each run to its first episode end.

    With `render_to`, the first copy is made with `render_mode="rgb_array"` and its frames
    are written to that video file.
    """
    from purerl import envs

    vec = envs.make_host(env_name, num_episodes)
    frames: list[np.ndarray] = []
    renderer = _renderer(env_name) if render_to else None
    try:
        obs = vec.reset(EVAL_SEED_OFFSET + seed)
        if renderer is not None:
            renderer.reset(seed=EVAL_SEED_OFFSET + seed)
            frames.append(_frame(renderer, env_name))
        returns = np.zeros(num_episodes, np.float64)
        lengths = np.zeros(num_episodes, np.int64)
        done = np.zeros(num_episodes, bool)
        truncated = np.zeros(num_episodes, bool)
        carry = policy.initial_carry(num_episodes)
        for _ in range(max_steps):
            key, act_key = jax.random.split(key)
            action, carry = policy.step(carry, obs, act_key)
            action = np.asarray(action)
            obs, _, terminated, cut, _, ended_return, ended_length, ended = vec.step(action)
            if renderer is not None and not done[0]:
                renderer.step(action[0])
                frames.append(_frame(renderer, env_name))
            first = ended & ~done
            returns = np.where(first, ended_return, returns)
            lengths = np.where(first, ended_length, lengths)
            truncated = np.where(first, cut & ~terminated, truncated)
            done |= ended
            if done.all():
                break
        else:
            returns = np.where(done, returns, vec.episode_return)
            lengths = np.where(done, lengths, vec.episode_length)
    finally:
        vec.close()
        if renderer is not None:
            renderer.close()
    if render_to:
        write_video(render_to, frames, _fps(renderer))
    return Episodes(returns, done, lengths, truncated)


EVAL_SEED_OFFSET = 1_000_003  # Evaluation envs' seeds, apart from the training envs'.


def _renderer(env_name: str) -> Any:
    """One more copy of the environment that renders RGB frames, stepped beside the first
    evaluation copy with the same seed and actions."""
    from purerl.envs.registry import resolve

    _, env_fn = resolve(env_name, render_mode="rgb_array")
    return env_fn()


def _frame(env: Any, env_name: str) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as e:
        if "pygame" in str(e).lower():
            raise ValueError(
                f"Rendering {env_name} needs pygame, which purerl does not install by "
                'default: pip install -e ".[render]" (or pip install pygame).'
            ) from e
        raise ValueError(f"Cannot render {env_name}: {e}") from e
    if frame is None:
        raise ValueError(f"{env_name} rendered no frame (does it support rgb_array?).")
    return np.asarray(frame)


def _fps(env: Any) -> int:
    return int((getattr(env, "metadata", None) or {}).get("render_fps", 30) or 30)


def write_video(path: str, frames: list[np.ndarray], fps: int) -> None:
    """Writes RGB frames `[H, W, 3]` to `path`: an animated GIF (matplotlib and Pillow) or,
    where ffmpeg is installed, any format it writes (.mp4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.animation as animation
    import matplotlib.pyplot as plt

    if not frames or frames[0] is None:
        raise ValueError("The environment rendered no frames (does it support rgb_array?).")
    height, width = frames[0].shape[:2]
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    image = ax.imshow(frames[0])

    def draw(i: int) -> list[Any]:
        image.set_data(frames[i])
        return [image]

    movie = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 / fps, blit=True)
    writer = "pillow" if str(path).endswith(".gif") else "ffmpeg"
    try:
        movie.save(str(path), writer=writer, fps=fps)
    finally:
        plt.close(fig)
