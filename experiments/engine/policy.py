"""Saved policies: what a run leaves behind for inference in research code.

Every run writes `RUN_DIR/config.json` (the agent, how to rebuild it, and both configs) when
it starts and `RUN_DIR/policy.msgpack` (each seed's final agent state, Flax-serialised) when
it ends. `load_policy(RUN_DIR)` turns them back into a jitted policy; the agent is rebuilt
as `engine.trainee.from_saved` says (its registry entry, its factory, or the agent given).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import flax.serialization
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl import envs
from purerl.core import Agent, Context, Recipe
from purerl.envs.host import as_gymnasium
from purerl.experiments.engine import trainee
from purerl.experiments.engine.build import build_loop
from purerl.experiments.engine.checkpoint import CHECKPOINT_DIR, Checkpoints, restore_runner
from purerl.experiments.engine.config import RunConfig, run_seeds
from purerl.experiments.engine.rundir import POLICY_FILE, read_config
from purerl.networks.torsos import auto_torso

EVAL_STREAM = 0x5EED  # fold_in tag: evaluation randomness apart from training's.


def eval_key(seed: int) -> jax.Array:
    """The key of seed `seed`'s evaluation episodes at the end of training."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_STREAM)


def save_policy(run_dir: Path, agent_states: Any) -> None:
    """Saves each seed's final agent state (leaves `[seeds, ...]`) to `RUN_DIR/policy.msgpack`,
    atomically (written beside, then renamed)."""
    path = Path(run_dir) / POLICY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(flax.serialization.to_bytes(jax.device_get(agent_states)))
    tmp.replace(path)


def load_agent(
    run_dir: str | Path, agent: trainee.Made | None = None
) -> tuple[Agent, Any, dict[str, Any]]:
    """`(agent, agent_states[seeds, ...], config)` of a run: its saved policy, or (a run
    stopped before its end) its newest checkpoint's. `config` is its `config.json` with the
    run's `trainee`, `env`, `env_params`, `spec` and host `observation_space` added.

    Args:
      run_dir: the run directory.
      agent: the agent to load it into, where the run cannot rebuild its own (an agent of
        your own trained without an importable factory): the `Agent`, `Recipe` or factory it
        was trained with.
    """
    config = read_config(run_dir)
    name, settings = config["run"]["env"], config["run"].get("env_params", ())
    if isinstance(agent, Agent):  # Loading needs only the agent, not its data path.
        agent = Recipe(agent, None, None, 1)  # type: ignore[arg-type]
    who = trainee.from_saved(config, agent)
    made_agent = who.build(Context()).agent
    loop, made = envs.with_params(envs.resolve(name), settings, name)
    env, env_params = made if loop == "device" else (None, None)
    spec, raw_space = envs.spec(name, settings), None
    if loop == "host":
        host_env = as_gymnasium(made(), name)
        raw_space = host_env.observation_space
        host_env.close()
    template = made_agent.init(jax.random.PRNGKey(0), spec)
    num_seeds = _num_runs(config)
    template = jax.tree.map(lambda x: jnp.stack([x] * num_seeds), template)
    path = Path(run_dir) / POLICY_FILE
    if path.is_file():
        try:
            states = flax.serialization.from_bytes(template, path.read_bytes())
            _check_like(states, template)
        except Exception as e:
            raise ValueError(
                f"Cannot read the saved policy {path}: {e}."
                f"{torso_hint(who.config, spec.observation_space)}"
            ) from e
    else:
        states = _from_checkpoint(Path(run_dir), config, who)
    # For a host (Python) environment, `env` and `env_params` are None.
    config.update(
        trainee=who, env=env, env_params=env_params, spec=spec, observation_space=raw_space
    )
    if who.config is not None:  # A registered agent's config, as the dataclass.
        config["agent_config"] = who.config
    return made_agent, states, config


def checkpointed_agent_states(who: trainee.Trainee, run: RunConfig) -> tuple[Any, int]:
    """The agent states `[seeds, ...]` in the newest checkpoint of the run `run.run_dir`,
    and the env steps (per seed) it was saved after."""
    built = build_loop(run, who.build)
    try:
        runner = built.loop.init()
        checkpoints = Checkpoints(Path(run.run_dir), run.keep_checkpoints)
        try:
            runner, host = restore_runner(checkpoints, runner)
        finally:
            checkpoints.close()
        per_interval = built.plan.updates_per_interval * built.plan.steps_per_update
        steps = (host["interval"] + 1) * per_interval
        return jax.device_get(built.loop.agent_states(runner)), steps
    finally:
        built.loop.close()


def _from_checkpoint(run_dir: Path, config: dict[str, Any], who: trainee.Trainee) -> Any:
    """The agent states of a run stopped before its end (no `policy.msgpack`), from its
    newest checkpoint; says so on stderr."""
    checkpoints = run_dir / CHECKPOINT_DIR
    if not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
        raise ValueError(
            f"{run_dir} has no saved policy ({POLICY_FILE}) and no checkpoint: the run "
            "stopped before its first checkpoint. Train it again (or --resume it, if it has one)."
        )
    run = RunConfig(**{**config["run"], "run_dir": str(run_dir), "quiet": True})
    states, steps = checkpointed_agent_states(who, run)
    print(
        f"note: {run_dir} has no {POLICY_FILE} (the run stopped before its end); using its "
        f"newest checkpoint, after {steps:,} env steps per seed.",
        file=sys.stderr,
    )
    return states


def torso_hint(agent_config: Any, observation_space: Any) -> str:
    """What to do when a run of Atari-sized frames saved with the "auto" torso does not load:
    it may come from before "auto" gave such frames the Nature CNN itself."""
    shape = getattr(observation_space, "shape", None) or ()
    if getattr(agent_config, "torso", None) != "auto" or auto_torso(shape) != "cnn":
        return ""
    return (
        '\nIf the run was saved before purerl\'s "auto" torso gave frames this size the Nature '
        "CNN itself (one ReLU layer of 512 after the convolutions; before, the agent's settings "
        'gave the dense layers), set "torso": "cnn" in its config.json and load or resume it '
        "again; nothing needs deleting."
    )


def _check_like(states: Any, template: Any) -> None:
    for got, want in zip(jax.tree.leaves(states), jax.tree.leaves(template), strict=True):
        if jnp.shape(got) != jnp.shape(want):
            raise ValueError(f"an array of shape {jnp.shape(got)} where {jnp.shape(want)} belongs")


class Policy:
    """A trained agent's deterministic policy, jitted.

    `policy(obs[B, ...], key) -> action[B]` for a feed-forward agent. A recurrent one carries
    its state: `carry = policy.initial_carry(B)`, then `action, carry = policy.step(carry,
    obs, key)` each step (reset an env's carry to the initial one when its episode ends).
    """

    def __init__(
        self,
        agent: Any,
        state: Any,
        observation_space: Any = None,
        *,
        agent_name: str | None = None,
        env_name: str | None = None,
        seed_index: int | None = None,
    ):
        self.agent_name, self.env_name, self.seed_index = agent_name, env_name, seed_index
        self.initial_carry = agent.initial_carry
        self.recurrent = bool(jax.tree.leaves(agent.initial_carry(1)))
        self.observation_space = observation_space  # A host env's own (None: as the agent's).

        @jax.jit
        def step(carry: Any, obs: Any, key: jax.Array) -> tuple[Any, Any]:
            return agent.act(state, carry, obs, key, deterministic=True)[:2]

        self._step = step

    def __repr__(self) -> str:
        what = self.agent_name or "agent"
        if self.env_name:
            what += f" on {self.env_name}"
        if self.seed_index is not None:
            what += f", seed index {self.seed_index}"
        return f"Policy({what}, {'recurrent' if self.recurrent else 'feed-forward'})"

    def step(self, carry: Any, obs: Any, key: jax.Array) -> tuple[Any, Any]:
        """`(action[B], carry)` for observations `obs[B, ...]`."""
        return self._step(carry, self.flatten(obs), key)

    def flatten(self, obs: Any) -> Any:
        """Observations as the agent sees them. A host env with structured observations
        (`Dict`, `Tuple`, `Discrete`, ...) was trained on them flattened (one-hot for
        discrete parts); give them as the env returns them, a batch from a vector env (leaves
        `[B, ...]`) or one observation, and they are flattened here (or give them flattened)."""
        space = self.observation_space
        if space is None or isinstance(space, gymnasium.spaces.Box):
            return obs
        size = gymnasium.spaces.flatdim(space)
        if isinstance(obs, np.ndarray | jax.Array) and obs.ndim == 2 and obs.shape[1] == size:
            return obs  # Flattened already.
        if space.contains(obs):
            batch = [obs]
        else:
            leaves, treedef = jax.tree.flatten(obs)
            try:
                batch = [
                    jax.tree.unflatten(treedef, [np.asarray(x)[i] for x in leaves])
                    for i in range(len(leaves[0]))
                ]
            except (IndexError, TypeError):
                batch = []
            if not batch or not all(space.contains(o) for o in batch):
                raise ValueError(
                    f"The policy expects observations from {space} (one, or a batch as a "
                    f"vector env returns them), or flattened [B, {size}]; got {obs!r:.200}."
                )
        return np.stack([gymnasium.spaces.flatten(space, o) for o in batch]).astype(np.float32)

    def __call__(self, obs: Any, key: jax.Array) -> Any:
        if self.recurrent:
            raise ValueError(
                "This policy is recurrent: call policy.step(carry, obs, key), starting from "
                "carry = policy.initial_carry(batch_size)."
            )
        return self.step((), obs, key)[0]


def _num_runs(config: dict[str, Any]) -> int:
    """Runs the saved states hold: seeds, times the configurations of a sweep."""
    run = config["run"]
    return len(run_seeds(RunConfig(num_seeds=run["num_seeds"], sweep=tuple(run.get("sweep", ())))))


def load_policy(
    run_dir: str | Path, seed_index: int = 0, agent: trainee.Made | None = None
) -> Policy:
    """A trained run's deterministic policy (see `Policy`).

    Args:
      run_dir: the run directory (it holds `config.json` and `policy.msgpack`).
      seed_index: which of the run's seeds (0 for its first, `--seed`); in a sweep, the run
        index in `sweep.csv`'s row order (configuration-major). A swept run's policy acts
        with the run config's values of the swept options.
      agent: for a run of an agent of your own that recorded no importable factory, the
        `Agent` (or `Recipe`, or factory) it was trained with.
    """
    agent, states, config = load_agent(run_dir, agent)
    num_seeds = _num_runs(config)
    if not 0 <= seed_index < num_seeds:
        raise ValueError(f"seed_index {seed_index} is out of range: the run has {num_seeds}.")
    state = jax.tree.map(lambda x: x[seed_index], states)
    return Policy(
        agent,
        state,
        config["observation_space"],
        agent_name=config["agent"],
        env_name=config["run"]["env"],
        seed_index=seed_index,
    )
