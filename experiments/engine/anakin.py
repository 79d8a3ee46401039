"""The device loop (Podracer's Anakin): acting, environment steps, the data path and learning
in one jitted program, vmapped over seeds and data-parallel over devices with `jax.shard_map`.

Layout of every array the loop carries between intervals: `[devices, seeds, ...]`, sharded
over the mesh axis `DEVICE_AXIS` on its first dimension. Inside the `shard_map`ped step a
device sees its own `[seeds, ...]` block: its env batch and its data-path shard per seed;
agent parameters start equal on every device and stay equal because gradients are
averaged with `pmean` over `DEVICE_AXIS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from purerl.core import (
    DEVICE_AXIS,
    Agent,
    EpisodeStats,
    Recipe,
    Transition,
    per_device,
    random_actions,
    reset_carry,
)
from purerl.envs.base import Environment, EnvParams, env_spec
from purerl.envs.wrappers import ClipReward, EpisodeStatistics, ScaleReward, VecEnv
from purerl.experiments.engine.distributed import first_block, gather
from purerl.experiments.engine.evaluate import eval_policy, evaluate
from purerl.experiments.engine.loop import (
    Evaluate,
    IntervalOutput,
    Runner,
    compile_program,
    make_learner,
    place_like,
    trajectory_example,
)
from purerl.replay.base import Schedule, flatten_time

__all__ = ["DEVICE_AXIS", "RUNS_AXIS", "DeviceLoop", "Runner", "make_mesh", "rollout", "seed_keys"]

RUNS_AXIS = "runs"  # With --spread-runs: independent runs (seeds, sweep configurations).


def rollout(
    agent: Agent,
    env: VecEnv,
    env_params: EnvParams,
    runner: Runner,
    schedule: Schedule,
    action_space: gymnasium.spaces.Space,
    steps_per_env_step: int = 1,
) -> tuple[Runner, Transition, EpisodeStats]:
    """Steps the vectorised env `schedule.rollout_length` times with `agent.act`; time-major
    `[T, B]`. The agent's carry is reset where an episode ends; during the first
    `schedule.warmup_steps` env steps the actions are uniformly random.

    Args:
      steps_per_env_step: env steps (per seed, over all devices) of one vector step here.
    """
    num_envs = jax.tree.leaves(runner.obs)[0].shape[0]

    def step(r: Runner, keys: jax.Array) -> tuple[Runner, tuple[Transition, jax.Array]]:
        act_key, env_key = keys
        action, carry, extras = agent.act(r.agent_state, r.carry, r.obs, act_key)
        if schedule.warmup_steps > 0:
            random = random_actions(action_space, jax.random.fold_in(act_key, 1), num_envs)
            action = jnp.where(r.steps < schedule.warmup_steps, random.astype(action.dtype), action)
        obs, env_state, reward, terminated, truncated, info = env.step(
            env_key, r.env_state, action, env_params
        )
        done = info["episode_done"]
        transition = Transition(
            r.obs,
            action,
            reward.astype(jnp.float32),
            terminated.astype(bool),
            truncated.astype(bool),
            info["final_observation"],
            extras,
            r.carry,
        )
        # The episodes' three sums in one array: one kernel a step stores them, not three.
        stats = jnp.stack(
            [
                jnp.sum(info["episode_return"] * done),
                jnp.sum(info["episode_length"].astype(jnp.float32) * done),
                jnp.sum(done.astype(jnp.float32)),
            ]
        )
        carry = reset_carry(agent.initial_carry(num_envs), carry, done)
        r = r._replace(
            env_state=env_state,
            obs=obs,
            carry=carry,
            steps=r.steps + steps_per_env_step,
        )
        return r, (transition, stats)

    # Every step's keys in one draw before the loop, not a split in each step: one draw fewer
    # per step, in the loop where the kernels of each draw add up.
    key, rollout_key = jax.random.split(runner.key)
    keys = jax.random.split(rollout_key, (schedule.rollout_length, 2))
    runner, (trajectory, stats) = jax.lax.scan(step, runner._replace(key=key), keys)
    # One collective for the three sums (each is a round trip between devices).
    stats = EpisodeStats(*jax.lax.psum(jnp.sum(stats, axis=0), DEVICE_AXIS))
    return runner, trajectory, stats


@contextlib.contextmanager
def unrolled_threefry() -> Iterator[None]:
    """Programs lowered inside draw their random bits with JAX's unrolled lowering of the
    threefry generator on a CPU too (a GPU's already), not the CPU's default loop of 5
    rounds; the bits are the same. On a CPU every draw or key split is then a few fused
    kernels where it was a loop of 85, and the device loop draws several per env step
    (`purerl benchmark --profile` prints the kernels and time per update). The CPU's rule
    is put back on the way out, so programs lowered elsewhere are as JAX makes them (a
    function JAX lowered before keeps the lowering it cached). This uses JAX's internal
    lowering registry (`jax._src`); where that has moved, programs lower with the default
    rule."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as threefry

        rolled = threefry._threefry2x32_cpu_lowering_rule
        unrolled = threefry._threefry2x32_lowering_rule
        primitive = threefry.threefry2x32_p
    except (ImportError, AttributeError):  # Another JAX: its default lowering.
        yield
        return
    mlir.register_lowering(primitive, unrolled, platform="cpu", inline=False)
    try:
        yield
    finally:
        mlir.register_lowering(primitive, rolled, platform="cpu")


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A one-axis mesh over the first `num_devices` local devices (all by default). In a
    multi-host run it spans every process's devices, `num_devices` in all: an equal share
    of each process's own, in process order."""
    processes = jax.process_count()
    local = jax.local_devices()
    if processes == 1:
        if num_devices is not None and not 1 <= num_devices <= len(local):
            raise ValueError(
                f"Asked for {num_devices} devices; {len(local)} are available "
                f"({local[0].platform}). On a CPU, simulate more with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts."
            )
        return Mesh(np.asarray(local[:num_devices]), (DEVICE_AXIS,))
    share = len(local) if num_devices is None else num_devices // processes
    if num_devices is not None and (num_devices % processes or not 1 <= share <= len(local)):
        raise ValueError(
            f"Asked for {num_devices} devices over {processes} processes with {len(local)} "
            "devices each; give a multiple of the process count, at most all of them."
        )
    by_process: dict[int, list[Any]] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    devices = [d for p in sorted(by_process) for d in by_process[p][:share]]
    return Mesh(np.asarray(devices), (DEVICE_AXIS,))


class DeviceLoop:
    """The data-parallel, seed-vmapped device loop over a JAX environment.

    Args:
      recipe: the agent (made with `axis_name=DEVICE_AXIS`), its data path and schedule, and
        the environments per device.
      env: a single JAX environment.
      env_params: its params.
      updates_per_interval: updates `lax.scan`ned in one call of `step`.
      mesh: the device mesh (see `make_mesh`).
      seed: the first seed.
      num_seeds: seeds vmapped in one program.
      sweep: a hyperparameter sweep trained in the same program: `(values, recipe_for)`,
        where `values` `[num_seeds, H]` holds each vmapped run's swept hyperparameters and
        `recipe_for(row)` makes the recipe with a traced row of them (it must differ from
        `recipe` only in those values). Run `i` then uses seed `seed + i % seeds_per_config`.
      seeds_per_config: seeds of each swept configuration.
      reward_gamma: scale rewards by the running std of discounted returns with this
        gamma (`envs.wrappers.ScaleReward`); None: no scaling.
      clip_rewards: the agent learns from rewards clipped to their sign.
      spread_runs: split the vmapped runs over the devices along `RUNS_AXIS` (each device
        trains its own runs with all their envs, no collectives) instead of training every
        run data-parallel on all of them; the recipe must then be sized for one device.
    """

    name = "device loop"
    kind = "device"

    def __init__(
        self,
        recipe: Recipe,
        env: Environment,
        env_params: EnvParams,
        updates_per_interval: int,
        mesh: Mesh,
        seed: int = 0,
        num_seeds: int = 1,
        sweep: tuple[np.ndarray, Any] | None = None,
        seeds_per_config: int | None = None,
        reward_gamma: float | None = None,
        spread_runs: bool = False,
        clip_rewards: bool = False,
    ):
        self.spread = spread_runs and mesh.devices.size > 1
        if self.spread:
            if num_seeds % mesh.devices.size:
                raise ValueError(
                    f"--spread-runs puts the {num_seeds} runs (seeds x sweep configurations) "
                    f"evenly on the {mesh.devices.size} devices; make them a multiple, or use "
                    "--num-devices to choose fewer devices."
                )
            # Runs split over RUNS_AXIS; the agent's DEVICE_AXIS is size 1: no collectives.
            mesh = Mesh(mesh.devices.reshape(-1, 1), (RUNS_AXIS, DEVICE_AXIS))
        lead = RUNS_AXIS if self.spread else DEVICE_AXIS  # The axis the first dim splits on.
        self.recipe, self.env, self.env_params, self.mesh = recipe, env, env_params, mesh
        self.seed, self.num_seeds = seed, num_seeds
        self.seeds_per_config = seeds_per_config or num_seeds
        schedule = recipe.schedule
        # The recipe counts envs over all devices; each device steps its share.
        self.envs_per_device = per_device(recipe.num_envs, "--num-envs", mesh.shape[DEVICE_AXIS])
        vec_env = VecEnv(EpisodeStatistics(env), self.envs_per_device)
        if clip_rewards:
            vec_env = ClipReward(vec_env)
        if reward_gamma is not None:
            vec_env = ScaleReward(vec_env, reward_gamma, DEVICE_AXIS)
        spec = env_spec(env, env_params)
        steps_per_env_step = recipe.num_envs
        # The swept values `[runs, H]` are an argument of the programs, not constants in
        # them: sweeps of as many configurations compile to one program (and hit the
        # persistent compile cache), whatever their values - a tuner's batches do.
        values = np.zeros((num_seeds, 0)) if sweep is None else sweep[0]
        self._values = jax.device_put(np.asarray(values, np.float32), NamedSharding(mesh, P()))

        def recipe_of(values: jax.Array, index: jax.Array | None) -> Recipe:
            """The recipe of vmapped run `index` (its swept values), or the only one."""
            return recipe if sweep is None else sweep[1](values[index])

        def update(
            runner: Runner, values: jax.Array, index: jax.Array | None = None
        ) -> tuple[Runner, tuple[dict[str, jax.Array], EpisodeStats]]:
            this = recipe_of(values, index)
            agent, data = this.agent, this.data
            runner, trajectory, stats = rollout(
                agent, vec_env, env_params, runner, schedule, spec.action_space, steps_per_env_step
            )
            runner, metrics = make_learner(agent, data, schedule)(runner, trajectory)
            return runner, (metrics, stats)

        def init_one(
            seed_key: jax.Array,
            device_index: jax.Array,
            values: jax.Array,
            index: jax.Array | None = None,
        ) -> Runner:
            this = recipe_of(values, index)
            agent, data = this.agent, this.data
            agent_key, env_key = jax.random.split(seed_key)
            # Same agent on every device; its own envs and randomness on each.
            env_key = jax.random.fold_in(env_key, device_index)
            agent_state = agent.init(agent_key, spec)
            reset_key, key = jax.random.split(env_key)
            obs, env_state = vec_env.reset(reset_key, env_params)
            example = trajectory_example(agent, agent_state, obs, key, schedule.rollout_length)
            return Runner(
                agent_state,
                env_state,
                obs,
                agent.initial_carry(self.envs_per_device),
                data.init(example),
                jnp.zeros((), jnp.int32),
                key,
            )

        def first_run(count: int) -> jax.Array:
            """The global index of this block's first run (runs split over devices)."""
            return jax.lax.axis_index(RUNS_AXIS) * count if self.spread else jnp.int32(0)

        def init_block(seed_keys: jax.Array, values: jax.Array) -> Runner:
            index = jax.lax.axis_index(DEVICE_AXIS)
            if self.spread:
                seed_keys = seed_keys[0]  # This device's runs.
            # One seed at a time, not vmapped: jaxlib's batched LAPACK QR (orthogonal init)
            # waits on the intra-op thread pool, and two such waits deadlock a 2-core CPU.
            if sweep is None:
                runner = jax.lax.map(lambda key: init_one(key, index, values), seed_keys)
            else:
                count = seed_keys.shape[0]
                runs = first_run(count) + jnp.arange(count)
                runner = jax.lax.map(
                    lambda a: init_one(a[0], index, values, a[1]), (seed_keys, runs)
                )
            return jax.tree.map(lambda x: x[None], runner)

        def step_block(runner: Runner, values: jax.Array) -> tuple[Runner, Any]:
            runner = jax.tree.map(lambda x: x[0], runner)
            if runner.key.shape[0] == 1:
                # One seed: skip the size-1 vmap, whose batched matmuls run slower on CPU.
                # The seed axis goes outside the scan: reshaping the carry inside it made
                # XLA copy the whole replay buffer on every update.
                first = None if sweep is None else first_run(1)
                runner, out = jax.lax.scan(
                    lambda r, _: update(r, values, first),
                    jax.tree.map(lambda x: x[0], runner),
                    None,
                    length=updates_per_interval,
                )
                runner = jax.tree.map(lambda x: x[None, None], runner)
                return runner, jax.tree.map(lambda x: x[None, :, None], out)
            if sweep is None:
                seed_update = jax.vmap(lambda r: update(r, values))
            else:
                count = runner.key.shape[0]
                runs = first_run(count) + jnp.arange(count)
                seed_update = lambda r: jax.vmap(update, (0, None, 0))(r, values, runs)  # noqa: E731
            runner, out = jax.lax.scan(
                lambda r, _: seed_update(r), runner, None, length=updates_per_interval
            )
            return jax.tree.map(lambda x: x[None], (runner, out))

        self._keys_spec = P(RUNS_AXIS) if self.spread else P()
        self._init = jax.jit(
            jax.shard_map(
                init_block,
                mesh=mesh,
                in_specs=(self._keys_spec, P()),
                out_specs=P(lead),
                check_vma=False,
            )
        )
        self._step_fn = jax.jit(
            jax.shard_map(
                step_block,
                mesh=mesh,
                in_specs=(P(lead), P()),
                out_specs=P(lead),
                check_vma=False,
            ),
            donate_argnums=0,
        )
        self._step = self._step_fn

    def init(self) -> Runner:
        """The initial runner `[devices, seeds, ...]`; compiles the interval step."""
        seeds = seed_keys(self.seed, self.seeds_per_config)
        seeds = jnp.tile(seeds, (self.num_seeds // self.seeds_per_config, 1))
        if self.spread:  # [devices, runs per device, 2]
            seeds = seeds.reshape((self.mesh.devices.size, -1) + seeds.shape[1:])
        keys = jax.device_put(seeds, NamedSharding(self.mesh, self._keys_spec))
        # It runs once: XLA's backend optimisations would cost ~0.5 s and save nothing.
        options = {"xla_backend_optimization_level": 0}
        init = self._init.lower(keys, self._values).compile(compiler_options=options)
        # Init finishes before the step compiles, so the two never compete for the cores.
        runner = jax.block_until_ready(init(keys, self._values))
        with unrolled_threefry():
            lowered = self._step_fn.lower(runner, self._values)
        self._step = compile_program(lowered, self.mesh.devices.flat[0].platform)
        self._fresh = lambda: init(keys, self._values)  # For `restart_runs`.
        self._pick: Any = None  # Compiled by its first call.
        return runner

    def restart_runs(self, runner: Runner, runs: np.ndarray, values: np.ndarray) -> Runner:
        """`runner` with the vmapped runs where `runs` (`[runs]` bools) is true started
        afresh, from their seeds' initial state, with the swept values `values` (`[runs, H]`,
        every run's, from now on); the other runs go on where they are. Only the first call
        compiles (a small program that picks each run's state): a tuner gives a finished
        trial's lanes to a new trial this way."""
        self._values = jax.device_put(np.asarray(values, np.float32), self._values.sharding)
        if self._pick is None:
            # Spread runs lie over [devices, runs per device]; otherwise every device holds
            # each run's own share of the envs along [devices, runs].
            def pick(runs: jax.Array, fresh: Runner, old: Runner) -> Runner:
                def one(new: jax.Array, kept: jax.Array) -> jax.Array:
                    shape = kept.shape[:2]
                    lanes = runs.reshape(shape) if self.spread else jnp.broadcast_to(runs, shape)
                    return jnp.where(lanes.reshape(lanes.shape + (1,) * (kept.ndim - 2)), new, kept)

                return jax.tree.map(one, fresh, old)

            shardings = jax.tree.map(lambda x: x.sharding, runner)
            self._pick = jax.jit(pick, out_shardings=shardings, donate_argnums=2)
        return self._pick(jnp.asarray(runs, bool), self._fresh(), runner)

    def step(self, runner: Runner) -> tuple[Runner, IntervalOutput]:
        """One logging interval; its outputs are `[updates, seeds]`."""
        runner, (metrics, stats) = self._step(runner, self._values)
        # Blocking here also keeps un-awaited collectives from piling up (docs/architecture.md).
        if self.spread:  # [devices, updates, runs per device] -> [updates, runs]
            pick = lambda x: np.concatenate(list(gather(x)), axis=-1)  # noqa: E731
        else:
            pick = first_block  # A device this process holds; equal on all devices.
        return runner, IntervalOutput(
            {k: pick(v) for k, v in metrics.items()}, EpisodeStats(*map(pick, stats))
        )

    def agent_states(self, runner: Runner) -> Any:
        if self.spread:  # Each device's runs, in order: [S, ...].
            return jax.tree.map(lambda x: flatten_time(gather(x)), runner.agent_state)
        # One device's copy ([S, ...]), from a device this process holds, as NumPy (one
        # transfer per leaf, where slicing on the device dispatched an op per leaf).
        return jax.tree.map(first_block, runner.agent_state)

    def with_agent_states(self, runner: Runner, states: Any) -> Runner:
        """`runner` with each seed's agent state `[S, ...]` replaced by `states` (on every
        device, or, with runs spread over the devices, on each run's own)."""
        if self.spread:  # [S, ...] (or one for all) -> [devices, runs per device, ...]
            states = jax.tree.map(
                lambda old, new: np.broadcast_to(
                    new, (old.shape[0] * old.shape[1],) + old.shape[2:]
                ).reshape(old.shape),
                runner.agent_state,
                states,
            )
        return runner._replace(agent_state=place_like(runner.agent_state, states))

    def host_state(self) -> dict[str, Any]:
        return {}

    def load_host_state(self, host: dict[str, Any], rebuild: bool = False) -> str | None:
        del host, rebuild  # The device loop's envs live in the runner, restored exactly.
        return None

    def evaluator(self, episodes: int, epsilon: float = 0.0) -> Evaluate:
        """Deterministic episodes (epsilon-greedy with `epsilon`) on fresh copies of the env,
        compiled once (the agent state is an argument)."""
        agent, env, params = self.recipe.agent, self.env, self.env_params
        space = env_spec(env, params).action_space

        @jax.jit
        def run(state: Any, key: jax.Array) -> jax.Array:
            return evaluate(eval_policy(agent, state, epsilon, space), env, params, key, episodes)[
                0
            ]

        return lambda state, key, seed: np.asarray(run(state, key))

    def close(self) -> None:
        pass


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Seed `seed + i` for the i-th of `num_seeds` vmapped seeds, so `--seed 3 --num-seeds 1`
    trains the same agent as the fourth seed of `--seed 0 --num-seeds 8`."""
    return jnp.stack([jax.random.PRNGKey(seed + i) for i in range(num_seeds)])
