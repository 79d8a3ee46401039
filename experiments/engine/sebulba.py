"""The host loop (Podracer's Sebulba): Python environments on the host, the learner on the
accelerator(s), running at the same time.

An actor thread steps a `HostVecEnv` (Gymnasium's vector API) with the agent's jitted `act`
and sends each rollout (the steps of one learner update; for off-policy agents, of a few)
through a bounded queue. The learner, in the calling thread, runs the very learner the
device loop runs (`loop.make_learner`: the agent's data path, replay included),
data-parallel over the mesh with `jax.shard_map`: each rollout's env batch is split over the
devices and gradients are averaged with `pmean`. After each update the new agent state goes
back to the actor.

Staleness is bounded and deterministic: rollout `i` is always collected with the agent
state of version `max(0, i - max_staleness)` (the state after that many learner updates),
so `max_staleness=0` alternates actor and learner (strictly on-policy) and `1` lets the
actor collect rollout `i` while the learner learns from rollout `i - 1`. Because which
parameters act never depends on thread timing, a run is a pure function of its seeds and
resumes bit-identically from a checkpoint (with `sync` envs, whose state pickles).

The actor and learner meet at the end of each logging interval (both finish their share),
where metrics are read and checkpoints are written.

With `--actors-on-workers` (Ray env workers, IMPALA's and SEED's split) each worker also
acts: the actor thread publishes the agent state a rollout acts with once (`ray.put`), every
worker collects its slice of the rollout with its own jitted `act` (`collect`, the actor
thread's own code) and sends it back whole, so only rollouts and parameters cross the
network. The staleness is the same; each worker's slice acts with its own key, folded from
the actor's (one worker: the actor's, so the run is the one the thread acts).
"""

from __future__ import annotations

import base64
import functools
import os
import queue
import sys
import threading
import time
from typing import Any, NamedTuple

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
    random_actions,
    reset_carry,
)
from purerl.envs.host import EnvsRestarted, HostEnvError, HostVecEnv
from purerl.envs.ray_env import EnvWorker, import_env
from purerl.envs.wrappers import HostRewardScale
from purerl.experiments.engine.evaluate import Policy, eval_policy, evaluate_host
from purerl.experiments.engine.loop import (
    Evaluate,
    IntervalOutput,
    LearnStep,
    Runner,
    compile_program,
    make_learner,
    place_like,
    trajectory_example,
)

ACTOR_STREAM = 0xAC7  # fold_in tag of the actor's randomness.
OFF_POLICY_ROLLOUT_STEPS = 128  # Env steps an off-policy rollout holds at least.
RESTARTS_PER_ROLLOUT = 3  # Env restarts one rollout goes on from; the next stops the run.


class HostRunner(NamedTuple):
    """Everything a host-loop run carries between logging intervals (with the envs).

    Attributes:
      learner: the learner's `Runner` (`env_state` and `obs` empty), leaves `[devices, 1, ...]`
        sharded over the mesh, as the device loop's with one seed.
      actor_states: the `max_staleness` agent states the next rollouts act with, oldest first
        (versions `rollouts - max_staleness + j`, clipped at 0), on the actor's device.
      actor_key: the actor's PRNG key.
      actor_carry: the agent's carry for the host envs, leaves `[B, ...]` (`()` if none).
      actor_done: `[B]` bool, which envs' episodes ended at the last step (their carry is
        reset before the next action).
      actor_steps: `[]` int32, env steps acted so far (for the warm-up).
    """

    learner: Runner
    actor_states: tuple[Any, ...]
    actor_key: jax.Array
    actor_carry: Any
    actor_done: jax.Array
    actor_steps: jax.Array


class HostLoop:
    """A host-loop run: one seed, `env` stepped on the host, learning on `mesh`.

    Args:
      recipe: the agent (made with `axis_name=DEVICE_AXIS`), its data path (per device) and
        schedule, and `num_envs`, all of the run's envs.
      env: the vectorised host environment (all of the run's envs).
      updates_per_rollout: learner updates per rollout sent to the learner.
      rollouts_per_interval: rollouts per logging interval.
      mesh: the learner's device mesh; the env batch must divide over it.
      max_staleness: how many learner updates the acting state may lag (see module doc).
      seed: the run's seed (the JAX keys and the envs' seeds derive from it).
      actors_on_workers: `env` is a `RayVecEnv` of `ActingWorker`s, which collect the
        rollouts (see module doc).
    """

    name = "host loop"
    kind = "host"

    def __init__(
        self,
        recipe: Recipe,
        env: HostVecEnv,
        updates_per_rollout: int,
        rollouts_per_interval: int,
        mesh: Mesh,
        max_staleness: int,
        seed: int,
        reward_gamma: float | None = None,
        clip_rewards: bool = False,
        actors_on_workers: bool = False,
    ):
        if max_staleness < 0:
            raise ValueError(f"--max-staleness must be 0 or more; got {max_staleness}.")
        agent, schedule = recipe.agent, recipe.schedule
        self.recipe, self.agent, self.env, self.mesh = recipe, agent, env, mesh
        self.rollout_length, self.k = schedule.rollout_length, updates_per_rollout
        self.rollouts_per_interval = rollouts_per_interval
        self.staleness, self.seed = max_staleness, seed
        self.num_devices = mesh.devices.size
        if env.num_envs % self.num_devices:
            raise ValueError(
                f"--num-envs ({env.num_envs}) must be divisible by the number of devices "
                f"({self.num_devices})."
            )
        self.rollouts = 0  # Rollouts learned from so far.
        self._clock = {"act": 0.0, "env": 0.0}  # The actor's seconds in `act`, `env.step`.
        self.clip_rewards, self.on_workers = clip_rewards, actors_on_workers
        self.reward_scale = (
            None if reward_gamma is None else HostRewardScale(env.num_envs, reward_gamma)
        )
        self.actor_device = mesh.devices.flat[0]
        self.sharding = NamedSharding(mesh, P(DEVICE_AXIS))
        self._learn = self._make_learn(make_learner(agent, recipe.data, schedule))
        self._squeeze = jax.jit(lambda tree: jax.tree.map(lambda x: x[0, 0], tree))
        space = env.spec.action_space
        self._act = jax.jit(make_act(agent, schedule.warmup_steps, space, env.num_envs))

    # Building ----------------------------------------------------------------------
    def _make_learn(self, learn: LearnStep) -> Any:
        def block(runner: Runner, trajectory: Transition) -> tuple[Runner, Any]:
            one = jax.tree.map(lambda x: x[0, 0], runner)
            trajectory = jax.tree.map(lambda x: x[0], trajectory)  # [k, T, B/D, ...]
            one, metrics = jax.lax.scan(learn, one, trajectory)
            metrics = jax.tree.map(lambda x: x[None, :, None], metrics)  # [1, k, 1]
            return jax.tree.map(lambda x: x[None, None], one), metrics

        return jax.jit(
            jax.shard_map(
                block,
                mesh=self.mesh,
                in_specs=P(DEVICE_AXIS),
                out_specs=P(DEVICE_AXIS),
                check_vma=False,
            ),
            donate_argnums=0,
        )

    def init(self) -> HostRunner:
        """The initial state; resets the envs and compiles the actor's and learner's steps."""
        seed_key = jax.random.PRNGKey(self.seed)
        agent_key, env_key = jax.random.split(seed_key)
        obs = self.env.reset(self.seed)
        actor_key = jax.random.fold_in(env_key, ACTOR_STREAM)
        spec, b, d = self.env.spec, self.env.num_envs, self.num_devices
        state = jax.jit(lambda key: self.agent.init(key, spec))(agent_key)
        carry = self.agent.initial_carry(b)
        done = np.zeros((b,), bool)
        if self.on_workers:  # Each worker compiles its own, before the timed training.
            try:
                self._call_workers("warm_up", state, (actor_key, carry, done, np.int32(0)))
            except EnvsRestarted as e:  # A worker made afresh compiles at its first rollout.
                print(f"warning: {e}.", file=sys.stderr)
        else:  # Compiles it.
            self._act(state, carry, done, obs, actor_key, np.int32(0))
        n = self.k * self.rollout_length
        # The data path is per device: it sees `[T, B / D]` of each rollout.
        example = trajectory_example(
            self.agent, state, obs[: b // d], actor_key, self.rollout_length
        )
        data_state = jax.jit(self.recipe.data.init)(example)
        keys = jnp.stack([jax.random.fold_in(env_key, i) for i in range(d)])
        learner = Runner(
            agent_state=self._replicate(state),
            env_state=(),
            obs=(),
            carry=(),
            data_state=self._replicate(data_state),
            steps=self._replicate(jnp.zeros((), jnp.int32)),
            key=jax.device_put(keys[:, None], self.sharding),
        )
        actor_state = self._to_actor(learner)
        self.rollouts = 0
        # Compile the learner now, as the device loop does, so training time is training.
        full = trajectory_example(self.agent, state, obs, actor_key, n)
        full = jax.tree.map(lambda x: _split(np.asarray(x), self.k, d), full)
        lowered = self._learn.lower(learner, jax.device_put(full, self.sharding))
        self._learn = compile_program(lowered, self.mesh.devices.flat[0].platform)
        return HostRunner(
            learner,
            (actor_state,) * self.staleness,
            actor_key,
            carry,
            jnp.asarray(done),
            jnp.zeros((), jnp.int32),
        )

    def _call_workers(self, method: str, state: Any, position: tuple[Any, ...], *more: Any) -> Any:
        """Every acting Ray worker's `method(state, its slice of position, *more, its
        index)`, in worker order; the state is put in Ray's object store once, for all."""
        import ray

        key, carry, done, steps = jax.device_get(position)
        state = ray.put(jax.device_get(state))
        args = [
            (state, (key, _envs(carry, lo, hi), done[lo:hi], steps), *more, w)
            for w, (lo, hi) in enumerate(self.env.slices)
        ]
        return self.env.call(method, args)

    def _to_actor(self, learner: Runner) -> Any:
        """What the actor acts with: device 0's copy of the learner's agent state (the
        devices hold equal ones), squeezed to one unbatched state on that device."""
        return self._squeeze(jax.tree.map(lambda x: x.addressable_data(0), learner.agent_state))

    def _replicate(self, tree: Any) -> Any:
        d = self.num_devices
        return jax.device_put(
            jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (d, 1) + np.shape(x)), tree),
            self.sharding,
        )

    # Host state for checkpoints ----------------------------------------------------
    def host_state(self) -> dict[str, Any]:
        state = self.env.get_state()
        return {
            "rollouts": self.rollouts,
            "envs": None if state is None else base64.b64encode(state).decode("ascii"),
            "reward_scale": None if self.reward_scale is None else self.reward_scale.state(),
            "env_restarts": getattr(self.env, "restarts", 0),
        }

    def load_host_state(self, host: dict[str, Any], rebuild: bool = False) -> str | None:
        """Restores the envs as pickled at the checkpoint (or, with `rebuild`, makes them
        afresh from their name); returns what the user should know about it."""
        self.rollouts = int(host["rollouts"])
        if hasattr(self.env, "restarts"):  # Counted over the whole run.
            self.env.restarts = int(host.get("env_restarts", 0))
        if self.reward_scale is not None and host.get("reward_scale") is not None:
            self.reward_scale.load(host["reward_scale"])
        if rebuild or host.get("envs") is None:
            self.env.reset(self.seed + 7919 * self.rollouts)
            why = (
                "--rebuild-envs: the Python environments were made afresh from their name"
                if rebuild
                else "warning: the environments' state was not saved (async or Ray "
                "envs, or envs that do not pickle)"
            )
            return f"{why}, so the resumed run starts new episodes and will not be bit-identical"
        self.env.set_state(base64.b64decode(host["envs"]))
        return (
            "note: the Python environments were restored as pickled at the checkpoint, so the "
            "run continues bit-identically; a change to their constructor since then does not "
            "reach them. Resume with --rebuild-envs to make them afresh (then not bit-identical)."
        )

    # One logging interval ----------------------------------------------------------
    def step(self, runner: HostRunner) -> tuple[HostRunner, IntervalOutput]:
        """Runs one logging interval; its outputs are `[updates, 1]` like the device loop's."""
        first, count, s = self.rollouts, self.rollouts_per_interval, self.staleness
        versions = _Versions()
        for j, state in enumerate(runner.actor_states):
            versions.publish(max(0, first - s + j), state)
        versions.publish(first, self._to_actor(runner.learner))
        rollouts: queue.Queue = queue.Queue(maxsize=max(1, s))
        stop = threading.Event()
        actor_box = [(runner.actor_key, runner.actor_carry, runner.actor_done, runner.actor_steps)]
        waits = {"actor": 0.0}
        self._clock = {"act": 0.0, "env": 0.0}

        def actor() -> None:
            try:
                position = actor_box[0]
                for i in range(first, first + count):
                    t = time.perf_counter()
                    state = versions.get(max(0, i - s))
                    waits["actor"] += time.perf_counter() - t
                    item, position = self._collect(state, position, stop)
                    if item is None:
                        return
                    t = time.perf_counter()
                    _put(rollouts, item, stop)
                    waits["actor"] += time.perf_counter() - t
                actor_box[0] = position
            except BaseException as e:  # Handed to the learner, which raises it.
                _put(rollouts, e, stop)

        start = time.perf_counter()
        thread = threading.Thread(target=actor, name="purerl-actor", daemon=True)
        thread.start()
        learner, history, learner_wait = runner.learner, [], 0.0
        try:
            for i in range(first, first + count):
                t = time.perf_counter()
                item = _get(rollouts, thread)
                learner_wait += time.perf_counter() - t
                if isinstance(item, BaseException):
                    raise item
                trajectory, stats = item
                # NumPy arrays straight into the compiled update, which puts them on its devices:
                # a separate `jax.device_put` of the tree cost 5x more (150 against 30 us).
                learner, metrics = self._learn(learner, trajectory)
                versions.publish(i + 1, self._to_actor(learner))
                metrics = jax.device_get(metrics)  # Waits for the update (docs/architecture.md).
                history.append(({k: np.asarray(v)[0] for k, v in metrics.items()}, stats))
        finally:
            stop.set()
            versions.close()
            thread.join()
        seconds_total = time.perf_counter() - start
        self.rollouts = first + count
        states = tuple(versions.get(max(0, self.rollouts - s + j)) for j in range(s))
        metrics = {k: np.concatenate([m[k] for m, _ in history]) for k in history[0][0]}
        episodes = EpisodeStats(*(_on_last(history, i, self.k) for i in range(3)))
        seconds = {"actor_wait": waits["actor"], "learner_wait": learner_wait}
        seconds.update(self._worker_seconds())
        for name, value in seconds.items():
            fraction = np.float32(value / seconds_total)
            metrics[f"{name}_fraction"] = np.full(episodes.count.shape, fraction)
        if hasattr(self.env, "worker_seconds"):  # Env workers made afresh, over the run.
            restarts = np.float32(self.env.restarts)
            metrics["worker_restarts"] = np.full(episodes.count.shape, restarts)
        key, carry, done, steps = actor_box[0]
        runner = HostRunner(learner, states, key, carry, done, steps)
        return runner, IntervalOutput(metrics, episodes)

    def _worker_seconds(self) -> dict[str, float]:
        """Where envs run in workers of their own (Ray), where the interval's time went:
        the actor's seconds in `act` and in `env.step` (sending, waiting, gathering), and
        the most and the mean seconds one worker spent stepping its envs. Against the
        learner's and actor's waits, they say whether envs, acting or learning bound the run."""
        if not hasattr(self.env, "worker_seconds"):
            return {}
        busy = self.env.worker_seconds()
        return {
            "act": self._clock["act"],
            "env": self._clock["env"],
            "env_worker_busy_max": float(np.max(busy)),
            "env_worker_busy_mean": float(np.mean(busy)),
        }

    def _collect(
        self, state: Any, position: tuple[Any, ...], stop: threading.Event
    ) -> tuple[tuple[Transition, np.ndarray] | None, tuple[Any, ...]]:
        """One rollout of `k * T` vector steps, as `[D, k, T, B/D, ...]` arrays.
        `position` is the actor's `(key, carry, done, steps)`, before and after.

        Where envs were lost and made afresh mid-rollout (a Ray env worker died), the
        rollout in flight is dropped whole and collected again from the new episodes (their
        carries reset), up to `RESTARTS_PER_ROLLOUT` times; one more stops the run."""
        rollout = self._rollout_on_workers if self.on_workers else self._rollout
        for _ in range(RESTARTS_PER_ROLLOUT):
            try:
                return rollout(state, position, stop)
            except EnvsRestarted as e:
                print(f"warning: {e}; the rollout in flight was dropped.", file=sys.stderr)
                key, carry, done, steps = position
                position = (key, carry, np.ones(np.shape(done), bool), steps)
        try:
            return rollout(state, position, stop)
        except EnvsRestarted as e:
            raise HostEnvError(
                f"Environment {self.env.name}: its envs were lost and made afresh "
                f"{RESTARTS_PER_ROLLOUT + 1} times in one rollout, the last: {e}"
            ) from e

    def _rollout(
        self, state: Any, position: tuple[Any, ...], stop: threading.Event
    ) -> tuple[tuple[Transition, np.ndarray] | None, tuple[Any, ...]]:
        """`_collect`'s rollout, from the envs' current observations, acted here."""
        n, b = self.k * self.rollout_length, self.env.num_envs
        item, position = collect(
            self._act, state, self.env, position, n, b, self._learned_reward, stop, self._clock
        )
        if item is None:
            return None, position
        trajectory, stats = item
        d = self.num_devices
        trajectory = jax.tree.map(lambda x: _split(x, self.k, d), trajectory)
        return (trajectory, stats), position

    def _learned_reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """The reward the agent learns from (the logged returns stay raw)."""
        if self.clip_rewards:
            reward = np.sign(reward)
        if self.reward_scale is not None:
            reward = self.reward_scale(reward, done)
        return reward

    def _rollout_on_workers(
        self, state: Any, position: tuple[Any, ...], stop: threading.Event
    ) -> tuple[tuple[Transition, np.ndarray] | None, tuple[Any, ...]]:
        """`_collect`'s rollout, each Ray env worker collecting its slice with `act` (the
        state put in Ray's object store once, for all of them), joined along the env axis."""
        env, n = self.env, self.k * self.rollout_length
        parts = self._call_workers("rollout", state, position, n, env.num_envs)
        if stop.is_set():
            return None, position
        joined = lambda *x: np.concatenate(x, axis=1)  # noqa: E731  Along the env axis.
        trajectory = jax.tree.map(joined, *[p[0] for p in parts])
        stats = np.sum([p[1] for p in parts], axis=0)
        carry, done = (
            jax.tree.map(lambda *x: np.concatenate(x), *[p[2][i] for p in parts]) for i in (1, 2)
        )
        key, steps = parts[0][2][0], parts[0][2][3]  # Every worker's are the same.
        for name in ("act", "env"):  # Over the workers, on average.
            self._clock[name] += float(np.mean([p[3][name] for p in parts]))
        env.busy += [p[3]["act"] + p[3]["env"] for p in parts]
        d = self.num_devices
        trajectory = jax.tree.map(lambda x: _split(x, self.k, d), trajectory)
        return (trajectory, stats), (key, carry, done, steps)

    def evaluator(self, episodes: int, epsilon: float = 0.0) -> Evaluate:
        """Deterministic episodes (epsilon-greedy with `epsilon`) on fresh copies of the host
        env (seeded apart from the training envs); the acting step is compiled once."""
        agent, name, space = self.agent, self.env.name, self.env.spec.action_space

        @jax.jit
        def step(state: Any, carry: Any, obs: Any, key: jax.Array) -> tuple[Any, Any]:
            return eval_policy(agent, state, epsilon, space).step(carry, obs, key)

        def run(state: Any, key: jax.Array, seed: int) -> np.ndarray:
            policy = Policy(functools.partial(step, state), agent.initial_carry)
            return evaluate_host(policy, name, key, episodes, seed)[0]

        return run

    # The end -----------------------------------------------------------------------
    @staticmethod
    def agent_states(runner: HostRunner) -> Any:
        """The learner's agent state, leaves `[1, ...]` (one seed), from device 0."""
        return jax.tree.map(lambda x: x[0], runner.learner.agent_state)

    def with_agent_states(self, runner: HostRunner, states: Any) -> HostRunner:
        """`runner` with the agent state (leaves `[1, ...]`) replaced by `states`, for the
        learner and every version the actor holds."""
        learner = runner.learner._replace(
            agent_state=place_like(runner.learner.agent_state, states)
        )
        actor = tuple(self._to_actor(learner) for _ in runner.actor_states)
        return runner._replace(learner=learner, actor_states=actor)

    def close(self) -> None:
        self.env.close()


def make_act(
    agent: Agent, warmup_steps: int, space: Any, num_envs: int, index: int | None = None
) -> Any:
    """The actor's step over `num_envs` envs, to jit: `act(state, carry, done, obs, key,
    steps)` returns `(action, extras, carry acted with)`, the next carry and the next key.
    Envs whose episode just ended start from a fresh carry; in the warm-up (`steps`, over
    all the run's envs, below `warmup_steps`) the actions are uniformly random. With `index`
    (slice `index` of several, acted apart), the action key is folded with it."""

    def act(
        state: Any, carry: Any, done: jax.Array, obs: jax.Array, key: jax.Array, steps: Any
    ) -> tuple[tuple[Any, Any, Any], Any, jax.Array]:
        carry = reset_carry(agent.initial_carry(num_envs), carry, done)
        key, act_key = jax.random.split(key)
        if index is not None:
            act_key = jax.random.fold_in(act_key, index)
        action, next_carry, extras = agent.act(state, carry, obs, act_key)
        if warmup_steps > 0:
            random = random_actions(space, jax.random.fold_in(act_key, 1), num_envs)
            warm = steps < warmup_steps
            action = jnp.where(warm, random.astype(action.dtype), action)
        return (action, extras, carry), next_carry, key

    return act


def collect(
    act: Any,
    state: Any,
    env: HostVecEnv,
    position: tuple[Any, ...],
    n: int,
    run_envs: int,
    learned_reward: Any,
    stop: threading.Event,
    clock: dict[str, float],
) -> tuple[tuple[Transition, np.ndarray] | None, tuple[Any, ...]]:
    """`n` steps of `env` acted by the jitted `act` (`make_act`) with `state`: the rollout as
    a `Transition` of `[n, B, ...]` arrays and the ended episodes' `(return sum, length sum,
    count)`, or None where `stop` was set. `position` is `(key, carry, done, steps)`, before
    and after; `steps` counts the run's `run_envs` envs; `learned_reward(reward, done)` is
    what the agent learns from. Adds the seconds spent acting and stepping to `clock`."""
    key, carry, done, steps = position
    steps = int(steps)  # Counted on the host: no device op per env step.
    obs = env.obs
    obs_buf = np.empty((n,) + obs.shape, obs.dtype)
    next_buf = np.empty_like(obs_buf)
    reward = np.empty((n, env.num_envs), np.float32)
    terminated = np.empty((n, env.num_envs), bool)
    truncated = np.empty((n, env.num_envs), bool)
    actions, extras, carries = [], [], []
    stats = np.zeros(3, np.float64)  # Return sum, length sum, count.
    for t in range(n):
        if stop.is_set():
            return None, position
        start = time.perf_counter()
        out, carry, key = act(state, carry, done, obs, key, np.int32(steps))
        # One NumPy view per leaf: `jax.device_get` costs 15 us more per call here.
        action, extra, acted_with = jax.tree.map(np.asarray, out)
        acted = time.perf_counter()
        next_obs, reward[t], terminated[t], truncated[t], final, ret, length, done = env.step(
            action
        )
        clock["act"] += acted - start
        clock["env"] += time.perf_counter() - acted
        reward[t] = learned_reward(reward[t], done)
        steps = steps + run_envs
        obs_buf[t], next_buf[t] = obs, final
        actions.append(action)
        extras.append(extra)
        carries.append(acted_with)
        if done.any():
            stats += (ret.sum(), length.sum(), done.sum())
        obs = next_obs
    stack = lambda *x: np.stack(x)  # noqa: E731
    trajectory = Transition(
        obs_buf,
        np.stack(actions),
        reward,
        terminated,
        truncated,
        next_buf,
        jax.tree.map(stack, *extras),
        jax.tree.map(stack, *carries),
    )
    return (trajectory, stats), (key, carry, done, jnp.asarray(steps, jnp.int32))


class Acting(NamedTuple):
    """What a Ray env worker acts with (`--actors-on-workers`): the agent (pickled to the
    worker), the schedule's warm-up steps, whether rewards are clipped to their sign, and
    how many workers act apart."""

    agent: Agent
    warmup_steps: int
    clip_rewards: bool
    workers: int


class ActingWorker:
    """A Ray env worker that also acts: its slice of envs (a sync `HostVecEnv`, as the
    actor thread's) and the agent's jitted `act`, collecting its slice of each rollout with
    `collect` (made by `RayVecEnv` with `worker=ActingWorker`)."""

    node = EnvWorker.node

    def __init__(self, env_fn: Any, name: str, num_envs: int, flatten: bool, acting: Acting):
        del flatten  # `HostVecEnv` flattens what needs it.
        prefer_sequential_cpu_ops(inline=True)  # One program at a time, before JAX starts.
        import_env(name)
        self.env, self.acting = HostVecEnv(env_fn, num_envs, name), acting
        self._act: Any = None  # Jitted by `warm_up` or the first rollout (with the index).

    def reset(self, seeds: list[int]) -> np.ndarray:
        return self.env.reset(seeds[0])  # Contiguous: env i of the slice gets `seeds[i]`.

    def warm_up(self, state: Any, position: tuple[Any, ...], index: int) -> None:
        """Compiles `act` on the slice's observations (the result dropped: nothing moves),
        so that the run's first rollout, timed as training, does not compile it."""
        key, carry, done, steps = position
        self._acting(index)(jax.device_put(state), carry, done, self.env.obs, key, steps)

    def _acting(self, index: int) -> Any:
        """The jitted `act` of worker `index`, made at the first call."""
        if self._act is None:
            acting = self.acting
            one = None if acting.workers == 1 else index  # One worker acts as the thread.
            space = self.env.spec.action_space
            self._act = jax.jit(
                make_act(acting.agent, acting.warmup_steps, space, self.env.num_envs, one)
            )
        return self._act

    def rollout(
        self, state: Any, position: tuple[Any, ...], n: int, run_envs: int, index: int
    ) -> tuple[Transition, np.ndarray, tuple[Any, ...], dict[str, float]]:
        """This worker's slice of a rollout (`collect`'s, as NumPy arrays), its position
        after, and its seconds acting and stepping."""
        clock = {"act": 0.0, "env": 0.0}
        clip = self.acting.clip_rewards
        learned = (lambda r, d: np.sign(r)) if clip else (lambda r, d: r)
        state, stop = jax.device_put(state), threading.Event()
        item, position = collect(
            self._acting(index), state, self.env, position, n, run_envs, learned, stop, clock
        )
        trajectory, stats = item
        return trajectory, stats, jax.device_get(position), clock

    def close(self) -> None:
        self.env.close()


def _put(rollouts: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Puts `item`, waiting for room, unless the learner stops first."""
    while not stop.is_set():
        try:
            rollouts.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(rollouts: queue.Queue, actor: threading.Thread) -> Any:
    while True:
        try:
            return rollouts.get(timeout=0.5)
        except queue.Empty:
            if not actor.is_alive() and rollouts.empty():
                raise HostEnvError("the actor thread stopped without an error") from None


def _envs(tree: Any, lo: int, hi: int) -> Any:
    """Envs `lo` to `hi - 1` of a tree of `[B, ...]` arrays."""
    return jax.tree.map(lambda x: x[lo:hi], tree)


def _split(x: np.ndarray, k: int, d: int) -> np.ndarray:
    """`[k * T, B, ...]` -> `[D, k, T, B / D, ...]`."""
    n, b = x.shape[:2]
    x = x.reshape((k, n // k, d, b // d) + x.shape[2:])
    return np.moveaxis(x, 2, 0)


def _on_last(history: list[tuple[Any, np.ndarray]], field: int, k: int) -> np.ndarray:
    """Each rollout's episode statistic `field` as a column `[k * rollouts, 1]`, on the last
    of the rollout's `k` updates."""
    column = np.zeros((len(history) * k, 1), np.float32)
    for i, (_, stats) in enumerate(history):
        column[(i + 1) * k - 1, 0] = stats[field]
    return column


class _Versions:
    """Agent states by version (learner updates so far), handed from learner to actor."""

    def __init__(self) -> None:
        self._states: dict[int, Any] = {}
        self._cond = threading.Condition()
        self._closed = False

    def publish(self, version: int, state: Any) -> None:
        with self._cond:
            self._states[version] = state
            self._cond.notify_all()

    def get(self, version: int) -> Any:
        """Waits for `version`; forgets those before it (nobody asks for them again)."""
        with self._cond:
            while version not in self._states:
                if self._closed:
                    raise HostEnvError("the learner stopped")
                self._cond.wait()
            for old in [v for v in self._states if v < version]:
                del self._states[old]
            return self._states[version]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


CPU_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
ASYNC_DISPATCH = "jax_cpu_enable_async_dispatch"


def prefer_sequential_cpu_ops(inline: bool = False) -> None:
    """Asks XLA's CPU backend, if it has not started yet, to run each program's ops in turn
    and, with `inline`, to run each program on the thread that calls it.

    By default XLA's CPU backend spreads a program's independent ops (the policy's and the
    value's MLPs, say) over threads; for the actor's tiny step the hand-offs cost more than
    they save, and the actor and learner threads keep the cores busy anyway. Measured on a
    2-core CPU, PPO on Gymnasium's CartPole: 17.7k -> 22.5k env steps/s.

    It also hands each program to a worker thread (async dispatch). Where actor and learner
    take turns (`--max-staleness 0`, on-policy agents), running programs inline instead took
    PPO's `act` from about 105 to 55 us per vector step (dispatch and result), its host loop
    1.1x faster. Where they overlap (off-policy), SAC's long learner programs ran 1.35x
    slower inline, so the loop keeps async dispatch there.

    A user's own `--xla_cpu_enable_concurrency_optimized_scheduler` in `XLA_FLAGS`, or
    `JAX_CPU_ENABLE_ASYNC_DISPATCH`, takes precedence. No effect on other backends, and none
    once JAX's CPU backend has started (both are read then).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()
    if inline and ASYNC_DISPATCH.upper() not in os.environ:
        jax.config.update(ASYNC_DISPATCH, False)


def updates_per_rollout(steps_per_update: int, acts_ahead: bool) -> int:
    """Learner updates per rollout: 1 on-policy; where acting may run ahead (replay), enough
    that a rollout holds at least `OFF_POLICY_ROLLOUT_STEPS` env steps (fewer, larger
    messages between threads)."""
    if not acts_ahead:
        return 1
    return max(1, -(-OFF_POLICY_ROLLOUT_STEPS // steps_per_update))
