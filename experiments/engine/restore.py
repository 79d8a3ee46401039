"""Where a run starts from other than scratch, in one place: `--resume` (the newest
checkpoint, exactly, in whichever layout purerl wrote it), extending a run with a longer
`--total-timesteps`, and `--init-from` (a new run starting from another run's agent)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
from purerl import envs
from purerl.experiments.engine.checkpoint import Checkpoints, restore_runner
from purerl.experiments.engine.config import Plan, RunConfig
from purerl.experiments.engine.loop import Loop
from purerl.experiments.engine.policy import load_agent, torso_hint


def resume(checkpoints: Checkpoints, loop: Loop, runner: Any, run: RunConfig, config: Any) -> Any:
    """`(runner, host)` of the newest checkpoint, the loop's host-side state (envs, counters)
    restored with it. Where the checkpoint does not match, the error says how to load an
    Atari run saved before the default torso changed (`policy.torso_hint`)."""

    def explain() -> str:
        return torso_hint(config, envs.spec(run.env, run.env_params).observation_space).strip()

    runner, host = restore_runner(checkpoints, runner, explain)
    if "features" not in host:
        raise ValueError(
            f"The checkpoint in {checkpoints.directory} was written by an earlier purerl "
            "whose checkpoints this version cannot continue; start a new run."
        )
    message = loop.load_host_state(host.get("loop", {}), rebuild=run.rebuild_envs)
    if message:
        print(message, file=sys.stderr)
    return runner, host


def extended(run: RunConfig, the_plan: Plan, total_timesteps: int) -> RunConfig:
    """`run` (planned as `the_plan`) continued to at least `total_timesteps` env steps, in
    more logging intervals of the same length, so its checkpoints line up."""
    interval = the_plan.updates_per_interval * the_plan.steps_per_update
    if total_timesteps <= the_plan.total_steps:
        raise ValueError(
            f"--total-timesteps {total_timesteps:,} with --resume extends a run, but the run "
            f"already has {the_plan.total_steps:,} steps; give more."
        )
    intervals = -(-int(total_timesteps) // interval)
    return dataclasses.replace(run, total_timesteps=intervals * interval, num_logs=intervals)


def check_resumable(run_dir: Path, finished: bool, extending: bool) -> None:
    """Refuses, before anything is written into the run, a resume that cannot go on: a
    finished run given no longer `--total-timesteps`, or a run with no checkpoint."""
    if finished and not extending:
        raise ValueError(
            f"{run_dir} is complete (it has its summary.json). Extend it with --resume "
            f"{run_dir} --total-timesteps N (more steps than it has), or start a new run "
            f"from its agent with --init-from {run_dir}."
        )
    require_checkpoint(run_dir)


def require_checkpoint(run_dir: Path) -> None:
    """Refuses to resume a run that has no checkpoint, naming what can be done instead."""
    if not Checkpoints.exists(run_dir):
        raise ValueError(
            f"{run_dir} has no checkpoint to continue from (it stopped before its first, or "
            f"ran with --checkpoint-every 0). Start a new run from its agent with "
            f"--init-from {run_dir} (where it saved a policy), or train it again without "
            "--resume."
        )


def _is_counter(leaf: Any) -> bool:
    return np.issubdtype(np.asarray(leaf).dtype, np.integer)


def init_from(loop: Loop, runner: Any, source: str, say: bool = True) -> Any:
    """`runner` with its agent states taken, where they fit, from the run `source`: each
    part of the agent state (parameters, target parameters, optimizer moments, statistics)
    whose arrays have this run's shapes is copied; counters (optimizer and update steps)
    start from this run's 0, so its schedules (a decaying learning rate, exploration) run
    from their start, as a new run's."""
    _, old, saved = load_agent(source)
    new = jax.device_get(loop.agent_states(runner))
    old_seeds = jax.tree.leaves(old)[0].shape[0]
    seeds = jax.tree.leaves(new)[0].shape[0]
    if old_seeds not in (1, seeds):
        raise ValueError(
            f"--init-from {source} has {old_seeds} seeds and this run {seeds}: give "
            "it as many, or one (then every seed starts from it)."
        )
    is_struct = dataclasses.is_dataclass(new) and dataclasses.is_dataclass(old)
    fields = [
        f.name
        for f in (dataclasses.fields(new) if is_struct else ())
        if f.metadata.get("pytree_node", True)
    ]
    parts = {name: (getattr(new, name), getattr(old, name, None)) for name in fields}
    if not is_struct:
        parts = {"agent state": (new, old)}
    copied, fresh, merged = [], [], {}

    def fits(a: Any, b: Any) -> bool:
        if b is None or jax.tree.structure(a) != jax.tree.structure(b):
            return False
        return all(
            np.shape(x)[1:] == np.shape(y)[1:] and np.asarray(x).dtype == np.asarray(y).dtype
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    def take(mine: Any, theirs: Any) -> Any:
        if _is_counter(mine):  # A count restarts: this run's schedules start at their start.
            return mine
        return np.broadcast_to(np.asarray(theirs), np.shape(mine))

    for name, (mine, theirs) in parts.items():
        if not jax.tree.leaves(mine):  # Nothing to copy either way (an unused field).
            merged[name] = mine
        elif fits(mine, theirs):
            merged[name] = jax.tree.map(take, mine, theirs)
            copied.append(name)
        else:
            merged[name] = mine
            fresh.append(name)
    if not any(  # Counters alone are no start: some parameters must fit.
        any(np.ndim(x) > 1 for x in jax.tree.leaves(parts[name][0])) for name in copied
    ):
        raise ValueError(
            f"--init-from {source}: nothing of its {saved['agent']} agent fits this "
            "run's (different networks or spaces?); start without it."
        )
    states = new.replace(**merged) if is_struct else merged["agent state"]
    if say:
        print(
            f"note: starting from {source}'s {saved['agent']} agent: copied "
            f"{', '.join(copied)} (optimizer moments included; step counters restart at 0, "
            "so learning-rate and exploration schedules start afresh)"
            + (f"; not copied (shapes differ): {', '.join(fresh)}" if fresh else ""),
            file=sys.stderr,
        )
    return loop.with_agent_states(runner, states)
