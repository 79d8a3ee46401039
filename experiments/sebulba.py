"""The host loop (Podracer's Sebulba): Python environments on the host, the learner on the
accelerator(s), running at the same time.

An actor thread steps a `HostVecEnv` (Gymnasium's vector API) with the agent's jitted `act`
and sends each rollout (the steps of one learner update; for off-policy agents, of a few)
through a bounded queue. The learner, in the calling thread, runs the very learner the
device loop runs (`anakin.on_policy_learn` / `off_policy_learn`, the replay buffer included),
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
import os
import queue
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from purerl.agents.base import Agent, Transition
from purerl.envs.host import HostEnvError, HostVecEnv
from purerl.experiments.anakin import DEVICE_AXIS, LearnFn, Runner
from purerl.replay.uniform import Buffer

ACTOR_STREAM = 0xAC7  # fold_in tag of the actor's randomness.
OFF_POLICY_ROLLOUT_STEPS = 128  # Env steps an off-policy rollout holds at least.


class HostRunner(NamedTuple):
    """Everything a host-loop run carries between logging intervals (with the envs).

    Attributes:
      learner: the learner's `Runner` (`env_state` and `obs` empty), leaves `[devices, 1, ...]`
        sharded over the mesh, as the device loop's with one seed.
      actor_states: the `max_staleness` agent states the next rollouts act with, oldest first
        (versions `rollouts - max_staleness + j`, clipped at 0), on the actor's device.
      actor_key: the actor's PRNG key.
    """

    learner: Runner
    actor_states: tuple[Any, ...]
    actor_key: jax.Array


class HostLoop:
    """A host-loop run: one seed, `env` stepped on the host, learning on `mesh`.

    Args:
      agent: an agent made with `axis_name=DEVICE_AXIS`.
      env: the vectorised host environment (all of the run's envs).
      learn: one learner update of one device: `(runner, trajectory[T, B/D]) -> (runner, m)`.
      rollout_length: vector env steps per learner update (`T`).
      updates_per_rollout: learner updates per rollout sent to the learner.
      rollouts_per_interval: rollouts per logging interval.
      mesh: the learner's device mesh; the env batch must divide over it.
      buffer: the replay buffer (per device), for off-policy agents.
      max_staleness: how many learner updates the acting state may lag (see module doc).
      seed: the run's seed (the JAX keys and the envs' seeds derive from it).
    """

    name = "host loop"

    def __init__(
        self,
        agent: Agent,
        env: HostVecEnv,
        learn: LearnFn,
        rollout_length: int,
        updates_per_rollout: int,
        rollouts_per_interval: int,
        mesh: Mesh,
        buffer: Buffer | None,
        max_staleness: int,
        seed: int,
    ):
        if max_staleness < 0:
            raise ValueError(f"--max-staleness must be 0 or more; got {max_staleness}.")
        self.agent, self.env, self.mesh, self.buffer = agent, env, mesh, buffer
        self.rollout_length, self.k = rollout_length, updates_per_rollout
        self.rollouts_per_interval = rollouts_per_interval
        self.staleness, self.seed = max_staleness, seed
        self.num_devices = mesh.devices.size
        if env.num_envs % self.num_devices:
            raise ValueError(
                f"--num-envs ({env.num_envs}) must be divisible by the number of devices "
                f"({self.num_devices})."
            )
        self.rollouts = 0  # Rollouts learned from so far.
        self.actor_device = mesh.devices.flat[0]
        self.sharding = NamedSharding(mesh, P(DEVICE_AXIS))
        self._learn = self._make_learn(learn)
        self._squeeze = jax.jit(lambda tree: jax.tree.map(lambda x: x[0, 0], tree))

        def act(state: Any, obs: jax.Array, key: jax.Array) -> tuple[Any, jax.Array]:
            key, act_key = jax.random.split(key)
            return agent.act(state, obs, act_key), key

        self._act = jax.jit(act)

    # Building ----------------------------------------------------------------------
    def _make_learn(self, learn: LearnFn) -> Any:
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
        spec = self.env.spec
        state = jax.jit(lambda key: self.agent.init(key, spec))(agent_key)
        (action, extras), _ = self._act(state, obs, actor_key)  # Compiles it.
        buffer_state = ()
        if self.buffer is not None:
            example = Transition(
                jnp.zeros(obs.shape[1:], obs.dtype),
                jnp.zeros(action.shape[1:], action.dtype),
                jnp.zeros((), jnp.float32),
                jnp.zeros((), bool),
                jnp.zeros((), bool),
                jnp.zeros(obs.shape[1:], obs.dtype),
                jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), extras),
            )
            buffer_state = self.buffer.init(example)
        keys = jnp.stack([jax.random.fold_in(env_key, d) for d in range(self.num_devices)])
        learner = Runner(
            agent_state=self._replicate(state),
            env_state=(),
            obs=(),
            buffer_state=self._replicate(buffer_state),
            key=jax.device_put(keys[:, None], self.sharding),
        )
        actor_state = self._to_actor(learner)
        self.rollouts = 0
        # Compile the learner now, as the device loop does, so training time is training.
        n, b = self.k * self.rollout_length, self.env.num_envs
        action, extras = jax.device_get((action, extras))
        example = Transition(
            np.zeros((n,) + obs.shape, obs.dtype),
            np.zeros((n, b) + action.shape[1:], action.dtype),
            np.zeros((n, b), np.float32),
            np.zeros((n, b), bool),
            np.zeros((n, b), bool),
            np.zeros((n,) + obs.shape, obs.dtype),
            jax.tree.map(lambda x: np.zeros((n, b) + x.shape[1:], x.dtype), extras),
        )
        example = jax.tree.map(lambda x: _split(x, self.k, self.num_devices), example)
        self._learn = self._learn.lower(learner, jax.device_put(example, self.sharding)).compile()
        return HostRunner(learner, (actor_state,) * self.staleness, actor_key)

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
        }

    def load_host_state(self, host: dict[str, Any]) -> str | None:
        """Restores the envs; returns a warning when they could not be restored exactly."""
        self.rollouts = int(host["rollouts"])
        if host.get("envs") is None:
            self.env.reset(self.seed + 7919 * self.rollouts)
            return (
                "the environments' state was not saved (async envs, or envs that do not "
                "pickle), so the resumed run starts new episodes and will not be bit-identical"
            )
        self.env.set_state(base64.b64decode(host["envs"]))
        return None

    # One logging interval ----------------------------------------------------------
    def step(self, runner: HostRunner) -> tuple[HostRunner, dict[str, np.ndarray]]:
        """Runs one logging interval; returns metrics `[1, updates, 1]` like the device loop."""
        first, count, s = self.rollouts, self.rollouts_per_interval, self.staleness
        versions = _Versions()
        for j, state in enumerate(runner.actor_states):
            versions.publish(max(0, first - s + j), state)
        versions.publish(first, self._to_actor(runner.learner))
        rollouts: queue.Queue = queue.Queue(maxsize=max(1, s))
        stop = threading.Event()
        key_box = [runner.actor_key]
        waits = {"actor": 0.0}

        def actor() -> None:
            try:
                key = key_box[0]
                for i in range(first, first + count):
                    t = time.perf_counter()
                    state = versions.get(max(0, i - s))
                    waits["actor"] += time.perf_counter() - t
                    item, key = self._collect(state, key, stop)
                    if item is None:
                        return
                    t = time.perf_counter()
                    _put(rollouts, item, stop)
                    waits["actor"] += time.perf_counter() - t
                key_box[0] = key
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
                learner, metrics = self._learn(learner, jax.device_put(trajectory, self.sharding))
                versions.publish(i + 1, self._to_actor(learner))
                metrics = jax.device_get(metrics)  # Waits for the update (DESIGN.md).
                history.append(_with_stats(metrics, stats, self.k))
        finally:
            stop.set()
            versions.close()
            thread.join()
        seconds_total = time.perf_counter() - start
        self.rollouts = first + count
        states = tuple(versions.get(max(0, self.rollouts - s + j)) for j in range(s))
        metrics = {k: np.concatenate([h[k] for h in history], axis=1) for k in history[0]}
        for name, seconds in (("actor_wait", waits["actor"]), ("learner_wait", learner_wait)):
            fraction = np.float32(seconds / seconds_total)
            metrics[f"{name}_fraction"] = np.full(metrics["count"].shape, fraction)
        return HostRunner(learner, states, key_box[0]), metrics

    def _collect(
        self, state: Any, key: jax.Array, stop: threading.Event
    ) -> tuple[tuple[Transition, np.ndarray] | None, jax.Array]:
        """One rollout of `k * T` vector steps, as `[D, k, T, B/D, ...]` arrays."""
        env, n = self.env, self.k * self.rollout_length
        b = env.num_envs
        obs = env.obs
        obs_buf = np.empty((n,) + obs.shape, obs.dtype)
        next_buf = np.empty_like(obs_buf)
        reward = np.empty((n, b), np.float32)
        terminated = np.empty((n, b), bool)
        truncated = np.empty((n, b), bool)
        actions, extras = [], []
        stats = np.zeros(3, np.float64)  # Return sum, length sum, count.
        for t in range(n):
            if stop.is_set():
                return None, key
            out, key = self._act(state, obs, key)
            action, extra = jax.device_get(out)
            next_obs, reward[t], terminated[t], truncated[t], final, ret, length, done = env.step(
                action
            )
            obs_buf[t], next_buf[t] = obs, final
            actions.append(action)
            extras.append(extra)
            if done.any():
                stats += (ret.sum(), length.sum(), done.sum())
            obs = next_obs
        extras = jax.tree.map(lambda *x: np.stack(x), *extras)
        trajectory = Transition(
            obs_buf, np.stack(actions), reward, terminated, truncated, next_buf, extras
        )
        d = self.num_devices
        trajectory = jax.tree.map(lambda x: _split(x, self.k, d), trajectory)
        return (trajectory, stats), key

    # The end -----------------------------------------------------------------------
    @staticmethod
    def agent_states(runner: HostRunner) -> Any:
        """The learner's agent state, leaves `[1, ...]` (one seed), from device 0."""
        return jax.tree.map(lambda x: x[0], runner.learner.agent_state)

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


def _with_stats(metrics: dict[str, np.ndarray], stats: np.ndarray, k: int) -> dict[str, Any]:
    """Adds a rollout's episode statistics to its `k` updates' metrics (on the last one)."""
    out = {name: np.asarray(v)[:1] for name, v in metrics.items()}  # [1, k, 1]
    for i, name in enumerate(("return_sum", "length_sum", "count")):
        column = np.zeros((1, k, 1), np.float32)
        column[0, -1, 0] = stats[i]
        out[name] = column
    return out


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


def prefer_sequential_cpu_ops() -> None:
    """Asks XLA's CPU backend, if it has not started yet, to run each program's ops in turn.

    Its default scheduler spreads independent ops (the policy's and the value's MLPs, say)
    over threads; for the actor's tiny step the hand-offs cost more than they save, and the
    actor and learner threads keep the cores busy anyway. Measured on a 2-core CPU, PPO on
    Gymnasium's CartPole: 17.7k -> 22.5k env steps/s. No effect on other backends, and none
    once JAX's CPU backend has started (the flag is read then).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()


def updates_per_rollout(steps_per_update: int, off_policy: bool) -> int:
    """Learner updates per rollout: 1 on-policy; off-policy enough that a rollout holds at
    least `OFF_POLICY_ROLLOUT_STEPS` env steps (fewer, larger messages between threads)."""
    if not off_policy:
        return 1
    return max(1, -(-OFF_POLICY_ROLLOUT_STEPS // steps_per_update))
