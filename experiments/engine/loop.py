"""What the device loop (`anakin`) and the host loop (`sebulba`) share: the recipe an agent
trains by, the interface the trainer drives, and the learner step both run.

A loop never asks what kind of agent it runs: it carries the agent's per-env carry (empty
for feed-forward agents), stores each rollout in the agent's data path and calls
`sample -> learn -> update` as the agent's schedule says.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from purerl.core import PRIORITIES, Agent, EpisodeStats, Transition
from purerl.replay.base import DataPath, Schedule


class Runner(NamedTuple):
    """Everything one seed's training carries on one device between updates."""

    agent_state: Any
    env_state: Any  # [num_envs, ...] per device; () on the host loop's learner.
    obs: Any  # [num_envs, *obs_shape] per device; () on the host loop's learner.
    carry: Any  # The agent's carry, leaves [num_envs, ...]; () for feed-forward agents.
    data_state: Any  # The data path's state (this device's replay shard, or last rollout).
    steps: jax.Array  # [] int32, env steps so far (per seed, over all devices).
    key: jax.Array


class IntervalOutput(NamedTuple):
    """What one logging interval returns to the host, leaves `[updates, seeds]`.

    Attributes:
      metrics: the learner's scalar metrics by name (means over gradient steps).
      episodes: the episodes that ended, summed over envs, steps and devices.
    """

    metrics: dict[str, np.ndarray]
    episodes: EpisodeStats


Evaluate = Callable[[Any, jax.Array, int], np.ndarray]  # (state, key, seed) -> returns[E]


class Loop(Protocol):
    """The interface the trainer drives, implemented by the device and the host loop.

    `name` and `kind` ("device" / "host") describe it; `init()` builds (and compiles) the
    initial runner; `step(runner)` runs one logging interval; `agent_states(runner)` gives
    each seed's agent state (leaves `[seeds, ...]`) and `with_agent_states(runner, states)`
    puts such states in; `host_state()` / `load_host_state()`
    save and restore what lives outside the runner (returning a warning when a restore is
    not exact); `evaluator(episodes)` builds deterministic evaluation episodes on fresh
    environments; `close()` releases the environments.
    """

    name: str
    kind: str

    def init(self) -> Any: ...

    def step(self, runner: Any) -> tuple[Any, IntervalOutput]: ...

    def agent_states(self, runner: Any) -> Any: ...

    def host_state(self) -> dict[str, Any]: ...

    def load_host_state(self, host: dict[str, Any], rebuild: bool = False) -> str | None: ...

    def with_agent_states(self, runner: Any, states: Any) -> Any: ...

    def evaluator(self, episodes: int, epsilon: float = 0.0) -> Evaluate: ...

    def close(self) -> None: ...


LearnStep = Callable[[Runner, Transition], tuple[Runner, dict[str, jax.Array]]]


def make_learner(agent: Agent, data: DataPath, schedule: Schedule) -> LearnStep:
    """One update's learning, the same on both loops: the rollout `[T, B]` goes into the data
    path, then `schedule.gradient_steps` times `sample -> learn -> update`, once the data path
    can sample (zero metrics before). Returns the metrics' means over the gradient steps,
    without the priorities handed to `update`."""

    def grad_step(carry: tuple[Any, Any], key: jax.Array) -> tuple[tuple[Any, Any], Any]:
        agent_state, data_state = carry
        sample_key, learn_key = jax.random.split(key)
        batch = data.sample(data_state, sample_key)
        agent_state, metrics = agent.learn(agent_state, batch, learn_key)
        data_state = data.update(data_state, batch, metrics)
        return (agent_state, data_state), {k: v for k, v in metrics.items() if k != PRIORITIES}

    def learn_all(operand: tuple[Any, Any, jax.Array]) -> tuple[tuple[Any, Any], Any]:
        agent_state, data_state, key = operand
        if schedule.gradient_steps == 1:
            return grad_step((agent_state, data_state), key)
        keys = jax.random.split(key, schedule.gradient_steps)
        carry, metrics = jax.lax.scan(grad_step, (agent_state, data_state), keys)
        return carry, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

    def wait(operand: tuple[Any, Any, jax.Array]) -> tuple[tuple[Any, Any], Any]:
        shapes = jax.eval_shape(learn_all, operand)[1]
        return operand[:2], jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def learn(runner: Runner, trajectory: Transition) -> tuple[Runner, dict[str, jax.Array]]:
        data_state = data.add(runner.data_state, trajectory)
        key, learn_key = jax.random.split(runner.key)
        operand = (runner.agent_state, data_state, learn_key)
        ready = data.can_sample(data_state)
        if isinstance(ready, (bool, np.bool_)):
            # Known when tracing (the on-policy path is always ready): no conditional.
            (agent_state, data_state), metrics = (learn_all if bool(ready) else wait)(operand)
        else:
            (agent_state, data_state), metrics = jax.lax.cond(ready, learn_all, wait, operand)
        runner = runner._replace(agent_state=agent_state, data_state=data_state, key=key)
        return runner, metrics

    return learn


def trajectory_example(
    agent: Agent, agent_state: Any, obs: Any, key: jax.Array, length: int
) -> Transition:
    """Zeros shaped like a rollout of `length` steps `[T, B, ...]` on the env batch `obs`,
    with the dtypes `act` really produces (what a data path's `init` takes)."""
    carry = agent.initial_carry(jax.tree.leaves(obs)[0].shape[0])
    action, _, extras = agent.act(agent_state, carry, obs, key)
    batch = action.shape[:1]
    step = Transition(
        obs,
        action,
        jnp.zeros(batch, jnp.float32),
        jnp.zeros(batch, bool),
        jnp.zeros(batch, bool),
        obs,
        extras,
        carry,
    )
    return jax.tree.map(lambda x: jnp.zeros((length,) + jnp.shape(x), jnp.asarray(x).dtype), step)


def place_like(placed: Any, states: Any) -> Any:
    """`states` (leaves `[S, ...]`) broadcast to the shapes of `placed` (leaves
    `[devices, S, ...]`) and put on the devices as those are."""
    return jax.tree.map(
        lambda old, new: jax.device_put(
            np.broadcast_to(np.asarray(new, old.dtype), old.shape), old.sharding
        ),
        placed,
        states,
    )


def program_options(platform: str) -> dict[str, Any]:
    """XLA options for the programs a loop compiles once and runs for the whole run (the
    device loop's interval step, the host loop's learner); none off a CPU. On a CPU:

    - copy insertion with region analysis, which spares some of the copies XLA makes of the
      values a `while` loop carries (232 of PPO's 8,446 kernels per update at Rejax's
      CartPole settings);
    - 512-bit vectors in XLA's own kernels where the CPU has AVX-512 (XLA's default is 256
      bits, for Intel parts whose clock drops under AVX-512).

    Together they took that PPO update from 1.97 to 1.76 ms and SAC's at Rejax's Pendulum
    settings from 0.35 to 0.30 ms on an AMD EPYC (`purerl benchmark --profile`, which
    prints them). Both change how the program is compiled, not what it computes."""
    if platform != "cpu":
        return {}
    options: dict[str, Any] = {"xla_cpu_copy_insertion_use_region_analysis": True}
    if _has_avx512():
        options["xla_cpu_prefer_vector_width"] = 512
    return options


def compile_program(lowered: Any, platform: str) -> Any:
    """`lowered` (a `jax.stages.Lowered`) compiled with `program_options(platform)`, or,
    with a warning, with JAX's defaults where this jaxlib no longer knows one of them."""
    try:
        return lowered.compile(compiler_options=program_options(platform))
    except jax.errors.JaxRuntimeError as error:
        if "No such compile option" not in str(error):
            raise
        warnings.warn(
            f"{error}; compiling with XLA's default options instead (the run is the same, "
            "possibly slower on a CPU).",
            stacklevel=2,
        )
        return lowered.compile()


@functools.cache
def _has_avx512() -> bool:
    """Whether this (Linux) CPU has AVX-512 Foundation; False where it cannot tell."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "avx512f" in line.split() for line in text.splitlines())
