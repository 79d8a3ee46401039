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
    EpisodeStats,
    Recipe,
    Transition,
    random_actions,
    reset_carry,
)
from purerl.envs.host import EnvsRestarted, HostEnvError, HostVecEnv
from purerl.envs.wrappers import HostRewardScale
from purerl.experiments.engine.evaluate import Policy, eval_policy, evaluate_host
from purerl.experiments.engine.loop import (
    Evaluate,
    IntervalOutput,
    LearnStep,
    Runner,
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
        self.clip_rewards = clip_rewards
        self.reward_scale = (
            None if reward_gamma is None else HostRewardScale(env.num_envs, reward_gamma)
        )
        self.actor_device = mesh.devices.flat[0]
        self.sharding = NamedSharding(mesh, P(DEVICE_AXIS))
        self._learn = self._make_learn(make_learner(agent, recipe.data, schedule))
        self._squeeze = jax.jit(lambda tree: jax.tree.map(lambda x: x[0, 0], tree))
        num_envs, space = env.num_envs, env.spec.action_space

        def act(
            state: Any, carry: Any, done: jax.Array, obs: jax.Array, key: jax.Array, steps: Any
        ) -> tuple[tuple[Any, Any, Any], Any, jax.Array]:
            """One action per env; returns `(action, extras, carry acted with)`, the next
            carry and the next key. Envs whose episode just ended start from a fresh carry."""
            carry = reset_carry(agent.initial_carry(num_envs), carry, done)
            key, act_key = jax.random.split(key)
            action, next_carry, extras = agent.act(state, carry, obs, act_key)
            if schedule.warmup_steps > 0:
                random = random_actions(space, jax.random.fold_in(act_key, 1), num_envs)
                warm = steps < schedule.warmup_steps
                action = jnp.where(warm, random.astype(action.dtype), action)
            return (action, extras, carry), next_carry, key

        self._act = jax.jit(act)

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
        self._act(state, carry, done, obs, actor_key, np.int32(0))  # Compiles it.
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
        self._learn = self._learn.lower(learner, jax.device_put(full, self.sharding)).compile()
        return HostRunner(
            learner,
            (actor_state,) * self.staleness,
            actor_key,
            carry,
            jnp.asarray(done),
            jnp.zeros((), jnp.int32),
        )

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
        for _ in range(RESTARTS_PER_ROLLOUT):
            try:
                return self._rollout(state, position, stop)
            except EnvsRestarted as e:
                print(f"warning: {e}; the rollout in flight was dropped.", file=sys.stderr)
                key, carry, done, steps = position
                position = (key, carry, np.ones(np.shape(done), bool), steps)
        try:
            return self._rollout(state, position, stop)
        except EnvsRestarted as e:
            raise HostEnvError(
                f"Environment {self.env.name}: its envs were lost and made afresh "
                f"{RESTARTS_PER_ROLLOUT + 1} times in one rollout, the last: {e}"
            ) from e

    def _rollout(
        self, state: Any, position: tuple[Any, ...], stop: threading.Event
    ) -> tuple[tuple[Transition, np.ndarray] | None, tuple[Any, ...]]:
        """`_collect`'s rollout, from the envs' current observations."""
        key, carry, done, steps = position
        steps = int(steps)  # Counted on the host: no device op per env step.
        env, n = self.env, self.k * self.rollout_length
        b = env.num_envs
        obs = env.obs
        obs_buf = np.empty((n,) + obs.shape, obs.dtype)
        next_buf = np.empty_like(obs_buf)
        reward = np.empty((n, b), np.float32)
        terminated = np.empty((n, b), bool)
        truncated = np.empty((n, b), bool)
        actions, extras, carries = [], [], []
        stats = np.zeros(3, np.float64)  # Return sum, length sum, count.
        clock = self._clock
        for t in range(n):
            if stop.is_set():
                return None, position
            start = time.perf_counter()
            out, carry, key = self._act(state, carry, done, obs, key, np.int32(steps))
            # One NumPy view per leaf: `jax.device_get` costs 15 us more per call here.
            action, extra, acted_with = jax.tree.map(np.asarray, out)
            acted = time.perf_counter()
            next_obs, reward[t], terminated[t], truncated[t], final, ret, length, done = env.step(
                action
            )
            clock["act"] += acted - start
            clock["env"] += time.perf_counter() - acted
            if self.clip_rewards:  # What the agent learns from; the logged returns stay raw.
                reward[t] = np.sign(reward[t])
            if self.reward_scale is not None:
                reward[t] = self.reward_scale(reward[t], done)
            steps = steps + b
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
        d = self.num_devices
        trajectory = jax.tree.map(lambda x: _split(x, self.k, d), trajectory)
        return (trajectory, stats), (key, carry, done, jnp.asarray(steps, jnp.int32))

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
