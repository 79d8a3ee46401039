"""Evaluation episodes: a deterministic policy on fresh environment instances, fully jitted
for JAX environments, stepped on the host for Python ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import distrax
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl import envs
from purerl.core import Agent
from purerl.envs.base import Environment, EnvParams
from purerl.envs.gymnax_env import GymnaxEnv
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


def no_episodes(episode_return: Any, episode_length: Any, xp: Any) -> Episodes:
    """`Episodes` none of which has ended yet, shaped and typed like the envs' running totals
    `episode_return[N]` and `episode_length[N]` (`xp`: `jax.numpy` on the device, NumPy on
    the host)."""
    none = xp.zeros(episode_return.shape, bool)
    return Episodes(xp.zeros_like(episode_return), none, xp.zeros_like(episode_length), none)


def tally(
    episodes: Episodes,
    ended: Any,
    episode_return: Any,
    episode_length: Any,
    terminated: Any,
    truncated: Any,
    xp: Any,
) -> Episodes:
    """`episodes` after one step of every env copy: each entry follows its copy's running
    episode (`episode_*`, the ended episode's totals where `ended`) up to that episode's end,
    and holds from then on, so an episode unfinished at the step limit keeps its return and
    length so far. The evaluations of both loops count episodes with it."""
    done = episodes.finished
    return Episodes(
        xp.where(done, episodes.returns, episode_return),
        done | ended,
        xp.where(done, episodes.lengths, episode_length),
        xp.where(done, episodes.truncated, truncated & ~terminated),
    )


def stateless(fn: Callable[[Any, jax.Array], jax.Array]) -> Policy:
    """A `Policy` from a plain `fn(obs[B, ...], key) -> action[B]`."""
    return Policy(lambda carry, obs, key: (fn(obs, key), carry), lambda batch_size: ())


def greedy_policy(agent: Agent, state: Any) -> Policy:
    """The agent's deterministic policy (`act(..., deterministic=True)`) at `state`."""

    def step(carry: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, Any]:
        action, carry, _ = agent.act(state, carry, obs, key, deterministic=True)
        return action, carry

    return Policy(step, agent.initial_carry)


def eval_policy(agent: Agent, state: Any, epsilon: float, action_space: Any) -> Policy:
    """What both loops evaluate: the agent's deterministic policy at `state`, acting
    uniformly at random with probability `epsilon` (`epsilon_greedy`)."""
    return epsilon_greedy(greedy_policy(agent, state), epsilon, action_space)


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

    def cond(loop):
        t, episodes = loop[0], loop[-1]
        return (t < max_steps) & ~jnp.all(episodes.finished)

    def body(loop):
        # Each env stops counting at its first episode end, so its carry is never reset.
        t, key, obs, state, carry, episodes = loop
        key, act_key, step_key = jax.random.split(key, 3)
        action, carry = policy.step(carry, obs, act_key)
        obs, state, _, terminated, cut, info = vec.step(step_key, state, action, env_params)
        episodes = tally(
            episodes,
            info["episode_done"],
            info["episode_return"],
            info["episode_length"],
            terminated,
            cut,
            jnp,
        )
        return t + 1, key, obs, state, carry, episodes

    episodes = no_episodes(state.episode_return, state.episode_length, jnp)
    carry = policy.initial_carry(num_episodes)
    loop = (jnp.zeros((), jnp.int32), key, obs, state, carry, episodes)
    return jax.lax.while_loop(cond, body, loop)[-1]


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
    vec = envs.make_host(env_name, num_episodes)
    frames: list[np.ndarray] = []
    renderer = _renderer(env_name) if render_to else None
    try:
        obs = vec.reset(EVAL_SEED_OFFSET + seed)
        if renderer is not None:
            renderer.reset(seed=EVAL_SEED_OFFSET + seed)
            frames.append(_frame(renderer, env_name))
        episodes = no_episodes(vec.episode_return, vec.episode_length, np)
        carry = policy.initial_carry(num_episodes)
        for _ in range(max_steps):
            key, act_key = jax.random.split(key)
            action, carry = policy.step(carry, obs, act_key)
            action = np.asarray(action)
            obs, _, terminated, cut, _, ended_return, ended_length, ended = vec.step(action)
            if renderer is not None and not episodes.finished[0]:
                renderer.step(action[0])
                frames.append(_frame(renderer, env_name))
            # The running totals, or the ended episode's (the vector env reset them).
            episode_return = np.where(ended, ended_return, vec.episode_return)
            episode_length = np.where(ended, ended_length, vec.episode_length)
            episodes = tally(episodes, ended, episode_return, episode_length, terminated, cut, np)
            if episodes.finished.all():
                break
    finally:
        vec.close()
        if renderer is not None:
            renderer.close()
    if render_to:
        write_video(render_to, frames, _fps(renderer))
    return episodes


EVAL_SEED_OFFSET = 1_000_003  # Evaluation envs' seeds, apart from the training envs'.


def _renderer(env_name: str) -> Any:
    """One more copy of the environment that renders RGB frames, stepped beside the first
    evaluation copy with the same seed and actions."""
    _, env_fn = envs.resolve(env_name, render_mode="rgb_array")
    return env_fn()


def _render_error(env_name: str, e: Exception) -> ValueError:
    if "pygame" in str(e).lower():
        return ValueError(
            f"Rendering {env_name} needs pygame, which purerl does not install by "
            'default: pip install -e ".[render]" (or pip install pygame).'
        )
    return ValueError(f"Cannot render {env_name}: {e}")


def _frame(env: Any, env_name: str) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as e:
        raise _render_error(env_name, e) from e
    if frame is None:
        raise ValueError(f"{env_name} rendered no frame (does it support rgb_array?).")
    return np.asarray(frame)


def _fps(env: Any) -> int:
    return int((getattr(env, "metadata", None) or {}).get("render_fps", 30) or 30)


def write_video(path: str, frames: list[np.ndarray], fps: int) -> None:
    """Writes RGB frames `[H, W, 3]` to `path`: an animated GIF (Pillow) or, where ffmpeg is
    installed, any format it writes (.mp4, through matplotlib)."""
    if not frames or frames[0] is None:
        raise ValueError("The environment rendered no frames (does it support rgb_array?).")
    if str(path).endswith(".gif"):
        from PIL import Image

        first, *rest = (Image.fromarray(np.asarray(f, np.uint8)) for f in frames)
        first.save(path, save_all=True, append_images=rest, duration=1000 / fps, loop=0)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.animation as animation
    import matplotlib.pyplot as plt

    height, width = frames[0].shape[:2]
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    image = ax.imshow(frames[0])

    def draw(i: int) -> list[Any]:
        image.set_data(frames[i])
        return [image]

    movie = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 / fps, blit=True)
    try:
        movie.save(str(path), writer="ffmpeg", fps=fps)
    finally:
        plt.close(fig)


# gymnax environments with a Gymnasium twin that draws them (with pygame), and the fields
# of gymnax's state that make up the twin's `state`, in its order.
GYMNASIUM_TWINS = {
    "CartPole-v1": ("x", "x_dot", "theta", "theta_dot"),
    "Acrobot-v1": ("joint_angle1", "joint_angle2", "velocity_1", "velocity_2"),
    "MountainCar-v0": ("position", "velocity"),
    "MountainCarContinuous-v0": ("position", "velocity"),
    "Pendulum-v1": ("theta", "theta_dot"),
}
# Those gymnax's own visualiser draws (with matplotlib).
GYMNAX_VISUALISED = (
    "Asterix-MinAtar",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Catch-bsuite",
    "Pong-misc",
    "PointRobot-misc",
    "MetaMaze-misc",
    "FourRooms-misc",
)


def jax_renderer(env: Environment, env_name: str) -> Any:
    """The gymnax environment under `env` (through purerl's wrappers) when it can be drawn,
    or a clear error: which JAX environments can, or that drawing this one needs pygame."""
    import importlib.util

    inner = env
    while not isinstance(inner, GymnaxEnv) and getattr(inner, "env", None) is not None:
        inner = inner.env  # Through wrappers (`MaskObservation`, ...), which keep its state.
    name = inner.env.name if isinstance(inner, GymnaxEnv) else None
    if name in GYMNASIUM_TWINS and importlib.util.find_spec("pygame") is None:
        raise _render_error(env_name, ImportError("pygame"))
    if name in GYMNASIUM_TWINS or name in GYMNAX_VISUALISED:
        return inner.env
    raise ValueError(
        f"--render cannot draw the JAX environment {env_name}; it draws "
        f"{', '.join([*GYMNASIUM_TWINS, *GYMNAX_VISUALISED])}, and any Gymnasium environment "
        "that renders rgb_array frames (--env gymnasium:ID, run on the host loop)."
    )


def record_episode(
    policy: Policy,
    env: Environment,
    env_params: EnvParams,
    key: jax.Array,
    num_episodes: int,
    max_steps: int = 100_000,
) -> tuple[list[Any], list[float]]:
    """`evaluate`'s first episode (env copy 0, with the same keys) step by step, to draw it.

    Returns:
      `(states, returns)`: the environment's state before each of the episode's steps (its
      reset state first; leaves unbatched NumPy arrays) and the return so far at each.
    """
    vec = VecEnv(EpisodeStatistics(env), num_episodes)
    reset_key, key = jax.random.split(key)
    obs, state = jax.jit(lambda k: vec.reset(k, env_params))(reset_key)
    carry = policy.initial_carry(num_episodes)

    @jax.jit
    def step(key: jax.Array, obs: Any, state: Any, carry: Any) -> tuple[Any, ...]:
        key, act_key, step_key = jax.random.split(key, 3)  # As `evaluate` splits them.
        action, carry = policy.step(carry, obs, act_key)
        obs, state, _, _, _, info = vec.step(step_key, state, action, env_params)
        return key, obs, state, carry, info["episode_done"][0], info["episode_return"][0]

    def first(state: Any) -> Any:
        return jax.tree.map(lambda x: np.asarray(x[0]), state.env_state)

    states, returns = [first(state)], [0.0]
    for _ in range(max_steps - 1):
        key, obs, state, carry, done, episode_return = step(key, obs, state, carry)
        if done:  # The state is the next episode's already.
            break
        states.append(first(state))
        returns.append(float(episode_return))
    return states, returns


def render_episode(
    policy: Policy,
    env: Environment,
    env_params: EnvParams,
    key: jax.Array,
    num_episodes: int,
    path: str,
    env_name: str,
    max_steps: int = 100_000,
) -> None:
    """Draws `evaluate`'s first episode on a gymnax environment to the video `path` (.gif, or
    what ffmpeg writes): classic control by its Gymnasium twin (`CartPole-v1` by
    `gymnasium:CartPole-v1`, put in each of the episode's states), MinAtar and the rest by
    gymnax's visualiser."""
    renderer = jax_renderer(env, env_name)
    states, returns = record_episode(policy, env, env_params, key, num_episodes, max_steps)
    if renderer.name in GYMNASIUM_TWINS:
        frames, fps = _twin_frames(renderer.name, env_params, states, env_name)
        write_video(path, frames, fps)
        return
    import matplotlib

    matplotlib.use("Agg")
    from gymnax.visualize import Visualizer

    visualizer = Visualizer(renderer, env_params, states, np.asarray(returns))
    try:
        visualizer.animate(str(path))
    except Exception as e:
        raise _render_error(env_name, e) from e


def _twin_frames(
    gymnax_id: str, env_params: EnvParams, states: list[Any], env_name: str
) -> tuple[list[np.ndarray], int]:
    """RGB frames of `states` (a gymnax classic-control env's) drawn by its Gymnasium twin,
    with the twin's constants set from `env_params` where they share a name (the pole's
    length, the track's bounds, ...), and the twin's frame rate."""
    import os

    # Offscreen frames: pygame needs neither a display nor a sound card.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    twin = gymnasium.make(gymnax_id, render_mode="rgb_array")
    try:
        twin.reset(seed=0)
        inner = twin.unwrapped
        constants = {  # The twin's numbers, by name in lower case (Acrobot's are upper).
            k.lower(): k
            for k in dir(inner)
            if not k.startswith("_") and type(getattr(inner, k, None)) in (int, float)
        }
        for field in dataclasses.fields(env_params):
            value = getattr(env_params, field.name)
            if field.name.lower() in constants and np.ndim(value) == 0:
                setattr(inner, constants[field.name.lower()], float(value))
        frames = []
        for state in states:
            inner.state = np.array([getattr(state, f) for f in GYMNASIUM_TWINS[gymnax_id]], float)
            if hasattr(state, "last_u"):  # Pendulum draws its last torque.
                inner.last_u = float(state.last_u)
            frames.append(_frame(twin, env_name))
        return frames, _fps(twin)
    finally:
        twin.close()
