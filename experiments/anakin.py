"""The device loop (Podracer's Anakin): acting, environment steps, replay and learning in one
jitted program, vmapped over seeds and data-parallel over devices with `jax.shard_map`.

Layout of every array the loop carries between intervals: `[devices, seeds, ...]`, sharded
over the mesh axis `DEVICE_AXIS` on its first dimension. Inside the `shard_map`ped step a
device sees its own `[seeds, ...]` block: its env batch and its replay shard per seed;
agent parameters start equal on every device and stay equal because gradients are
averaged with `pmean` over `DEVICE_AXIS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from purerl.agents.base import Agent, Transition
from purerl.envs.base import Environment, EnvParams
from purerl.envs.wrappers import EpisodeStatistics, VecEnv
from purerl.replay.uniform import Buffer

DEVICE_AXIS = "device"


class Runner(NamedTuple):
    """Everything one seed's training carries on one device between updates."""

    agent_state: Any
    env_state: Any  # [num_envs, ...] per device.
    obs: Any  # [num_envs, *obs_shape] per device.
    buffer_state: Any  # A replay shard, or () for on-policy agents.
    key: jax.Array


class EpisodeStats(NamedTuple):
    """Finished episodes in one update, summed over envs, steps and devices."""

    return_sum: jax.Array  # [] float32
    length_sum: jax.Array  # [] float32
    count: jax.Array  # [] float32


def rollout(
    agent: Agent,
    env: VecEnv,
    env_params: EnvParams,
    runner: Runner,
    num_steps: int,
) -> tuple[Runner, Transition, EpisodeStats]:
    """Steps the vectorised env `num_steps` times with `agent.act`; time-major `[T, B]`."""

    def step(carry: Runner, _: None) -> tuple[Runner, tuple[Transition, EpisodeStats]]:
        key, act_key, env_key = jax.random.split(carry.key, 3)
        action, extras = agent.act(carry.agent_state, carry.obs, act_key)
        obs, env_state, reward, terminated, truncated, info = env.step(
            env_key, carry.env_state, action, env_params
        )
        transition = Transition(
            carry.obs, action, reward, terminated, truncated, info["final_observation"], extras
        )
        done = info["episode_done"].astype(jnp.float32)
        stats = EpisodeStats(
            jnp.sum(info["episode_return"] * done),
            jnp.sum(info["episode_length"].astype(jnp.float32) * done),
            jnp.sum(done),
        )
        return carry._replace(env_state=env_state, obs=obs, key=key), (transition, stats)

    runner, (trajectory, stats) = jax.lax.scan(step, runner, None, length=num_steps)
    stats = jax.tree.map(lambda x: jax.lax.psum(jnp.sum(x), DEVICE_AXIS), stats)
    return runner, trajectory, stats


UpdateFn = Callable[[Runner], tuple[Runner, dict[str, jax.Array]]]


def make_on_policy_update(
    agent: Agent, env: VecEnv, env_params: EnvParams, num_steps: int
) -> UpdateFn:
    """One update: a rollout of `num_steps` per env, then `agent.learn` on it."""
    learn = on_policy_learn(agent)

    def update(runner: Runner) -> tuple[Runner, dict[str, jax.Array]]:
        runner, trajectory, stats = rollout(agent, env, env_params, runner, num_steps)
        runner, metrics = learn(runner, trajectory)
        return runner, {**metrics, **stats._asdict()}

    return update


def make_off_policy_update(
    agent: Agent, env: VecEnv, env_params: EnvParams, buffer: Buffer, num_steps: int
) -> UpdateFn:
    """One update: `num_steps` vectorised steps into replay, then one `agent.learn` on a
    sample, once the buffer holds its `min_size`."""
    learn = off_policy_learn(agent, buffer)

    def update(runner: Runner) -> tuple[Runner, dict[str, jax.Array]]:
        runner, trajectory, stats = rollout(agent, env, env_params, runner, num_steps)
        runner, metrics = learn(runner, trajectory)
        return runner, {**metrics, **stats._asdict()}

    return update


LearnFn = Callable[[Runner, Transition], tuple[Runner, dict[str, jax.Array]]]


def on_policy_learn(agent: Agent) -> LearnFn:
    """`agent.learn` on a whole `[T, B]` trajectory (both loops' on-policy learner)."""

    def learn(runner: Runner, trajectory: Transition) -> tuple[Runner, dict[str, jax.Array]]:
        key, learn_key = jax.random.split(runner.key)
        agent_state, metrics = agent.learn(runner.agent_state, trajectory, learn_key)
        return runner._replace(agent_state=agent_state, key=key), metrics

    return learn


def off_policy_learn(agent: Agent, buffer: Buffer) -> LearnFn:
    """A `[T, B]` trajectory into replay, then one `agent.learn` on a sample once the buffer
    holds its `min_size` (both loops' off-policy learner)."""

    def learn_step(runner: Runner, trajectory: Transition) -> tuple[Runner, dict[str, jax.Array]]:
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), trajectory)
        buffer_state = buffer.add(runner.buffer_state, flat)
        key, sample_key, learn_key = jax.random.split(runner.key, 3)
        batch = buffer.sample(buffer_state, sample_key)

        def learn(state: Any) -> tuple[Any, dict[str, jax.Array]]:
            return agent.learn(state, batch, learn_key)

        def wait(state: Any) -> tuple[Any, dict[str, jax.Array]]:
            shapes = jax.eval_shape(learn, state)[1]
            return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        agent_state, metrics = jax.lax.cond(
            buffer.can_sample(buffer_state), learn, wait, runner.agent_state
        )
        runner = runner._replace(agent_state=agent_state, buffer_state=buffer_state, key=key)
        return runner, metrics

    return learn_step


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A one-axis mesh over the first `num_devices` local devices (all by default)."""
    devices = jax.local_devices() if jax.process_count() == 1 else jax.devices()
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(
                f"Asked for {num_devices} devices; {len(devices)} are available "
                f"({devices[0].platform}). On a CPU, simulate more with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts."
            )
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DEVICE_AXIS,))


class Loop(NamedTuple):
    """A compiled-on-demand device loop.

    Attributes:
      init: `(seed_keys[S]) -> runner[D, S, ...]`, sharded over the mesh.
      step: `(runner) -> (runner, metrics[D, U, S])`, `U` updates per call; donates `runner`.
      mesh: the device mesh.
    """

    init: Callable[[jax.Array], Runner]
    step: Callable[[Runner], tuple[Runner, dict[str, jax.Array]]]
    mesh: Mesh


def make_loop(
    agent: Agent,
    env: Environment,
    env_params: EnvParams,
    update: Callable[[VecEnv], UpdateFn],
    num_envs: int,
    updates_per_step: int,
    mesh: Mesh,
    buffer: Buffer | None = None,
) -> Loop:
    """Builds the data-parallel, seed-vmapped device loop.

    Args:
      agent: an agent made with `axis_name=DEVICE_AXIS`.
      env: a single JAX environment.
      env_params: its params.
      update: `(vec_env) -> update_fn`, one learner update of one seed on one device.
      num_envs: environments per device.
      updates_per_step: updates `lax.scan`ned in one call of `step`.
      mesh: the device mesh (see `make_mesh`).
      buffer: the replay buffer (per device), for off-policy agents.
    """
    from purerl.envs.base import env_spec

    vec_env = VecEnv(EpisodeStatistics(env), num_envs)
    spec = env_spec(env, env_params)
    update_fn = update(vec_env)

    def init_one(seed_key: jax.Array, device_index: jax.Array) -> Runner:
        agent_key, env_key = jax.random.split(seed_key)
        # Same agent on every device; its own envs and randomness on each.
        env_key = jax.random.fold_in(env_key, device_index)
        agent_state = agent.init(agent_key, spec)
        reset_key, key = jax.random.split(env_key)
        obs, env_state = vec_env.reset(reset_key, env_params)
        buffer_state = ()
        if buffer is not None:
            example = Transition(
                obs[0],
                jnp.zeros((), jnp.int32),
                jnp.zeros((), jnp.float32),
                jnp.zeros((), bool),
                jnp.zeros((), bool),
                obs[0],
                {},
            )
            example = _act_example(agent, agent_state, obs, key, example)
            buffer_state = buffer.init(example)
        return Runner(agent_state, env_state, obs, buffer_state, key)

    def init_block(seed_keys: jax.Array) -> Runner:
        index = jax.lax.axis_index(DEVICE_AXIS)
        # One seed at a time, not vmapped: jaxlib's batched LAPACK QR (orthogonal init)
        # waits on the intra-op thread pool, and two such waits deadlock a 2-core CPU.
        runner = jax.lax.map(lambda key: init_one(key, index), seed_keys)
        return jax.tree.map(lambda x: x[None], runner)

    def step_block(runner: Runner) -> tuple[Runner, dict[str, jax.Array]]:
        runner = jax.tree.map(lambda x: x[0], runner)
        if runner.key.shape[0] == 1:
            # One seed: skip the size-1 vmap, whose batched matmuls run slower on CPU.
            def seed_update(r: Runner) -> tuple[Runner, dict[str, jax.Array]]:
                r, m = update_fn(jax.tree.map(lambda x: x[0], r))
                return jax.tree.map(lambda x: x[None], (r, m))
        else:
            seed_update = jax.vmap(update_fn)
        runner, metrics = jax.lax.scan(
            lambda r, _: seed_update(r), runner, None, length=updates_per_step
        )
        return jax.tree.map(lambda x: x[None], (runner, metrics))

    init = jax.jit(
        jax.shard_map(
            init_block, mesh=mesh, in_specs=P(), out_specs=P(DEVICE_AXIS), check_vma=False
        )
    )
    step = jax.jit(
        jax.shard_map(
            step_block,
            mesh=mesh,
            in_specs=P(DEVICE_AXIS),
            out_specs=P(DEVICE_AXIS),
            check_vma=False,
        ),
        donate_argnums=0,
    )

    def init_sharded(seed_keys: jax.Array) -> Runner:
        seed_keys = jax.device_put(seed_keys, NamedSharding(mesh, P()))
        # It runs once: XLA's backend optimisations would cost ~0.5 s and save nothing.
        options = {"xla_backend_optimization_level": 0}
        return init.lower(seed_keys).compile(compiler_options=options)(seed_keys)

    return Loop(init_sharded, step, mesh)


def _act_example(
    agent: Agent, agent_state: Any, obs: jax.Array, key: jax.Array, example: Transition
) -> Transition:
    """The replay item for one transition, with the dtypes `act` really produces."""
    action, extras = agent.act(agent_state, obs, key)
    return example._replace(
        action=jnp.zeros(action.shape[1:], action.dtype),
        extras=jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), extras),
    )


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Seed `seed + i` for the i-th of `num_seeds` vmapped seeds, so `--seed 3 --num-seeds 1`
    trains the same agent as the fourth seed of `--seed 0 --num-seeds 8`."""
    return jnp.stack([jax.random.PRNGKey(seed + i) for i in range(num_seeds)])


def global_shape(num: int, what: str, devices: Sequence[Any] | int) -> int:
    """`num` split evenly over devices, or a clear error."""
    count = devices if isinstance(devices, int) else len(devices)
    if num % count:
        raise ValueError(f"{what} ({num}) must be divisible by the number of devices ({count}).")
    return num // count
