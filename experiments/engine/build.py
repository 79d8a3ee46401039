"""Builds the loop a run trains on: the device loop for a JAX environment, the host loop for
a Python one, each sized from the agent's `Recipe` and the run's devices."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh
from purerl import envs
from purerl.core import Context, EnvSpec, Recipe
from purerl.envs.atari import clips_rewards
from purerl.envs.base import env_spec
from purerl.experiments.engine import anakin, distributed, sebulba
from purerl.experiments.engine.config import (
    Plan,
    RunConfig,
    enable_compile_cache,
    layout,
    plan,
    run_seeds,
)
from purerl.experiments.engine.loop import Loop

Build = Callable[[Context], Recipe]
Swept = tuple[Any, Callable[[Context], Callable[[Any], Recipe]]]  # (Sweep, recipe of a row)


class Built(NamedTuple):
    """A run's loop and what describes it.

    Attributes:
      loop: the device or host loop.
      plan: how the run divides into updates and logging intervals.
      mesh: the devices the learner is data-parallel over.
      where: a few words on where it runs, for the startup line.
    """

    loop: Loop
    plan: Plan
    mesh: Mesh
    where: str


def run_plan(run: RunConfig, recipe: Recipe, host: bool) -> Plan:
    """How `run` divides into updates and logging intervals, on the host loop (each interval
    a whole number of the updates one rollout feeds) or the device loop."""
    steps = recipe.env_steps_per_update
    k = sebulba.updates_per_rollout(steps, recipe.acts_ahead) if host else 1
    return plan(run.total_timesteps, steps, run.num_logs, multiple=k)


def sizes(build: Build) -> Recipe:
    """The recipe as the agent sizes it for one device and one update: its env count,
    rollout length and data path, which plan the run (its schedules are sized later)."""
    recipe = build(Context(num_devices=1, num_updates=1))
    if recipe.data is None or recipe.schedule is None:
        raise ValueError(
            "Training needs the agent's data path and schedule as well as the Agent: "
            "purerl.train(agent, purerl.replay.on_policy(), Schedule(rollout_length=128), run), "
            "or a factory that returns a purerl.Recipe."
        )
    return recipe


def check_agent(recipe: Recipe, spec: EnvSpec) -> None:
    """Traces the agent's `init` on the env's spaces (shapes only, nothing runs), so that an
    agent that cannot act in the env (a discrete-action agent on a `Box`, say) is refused
    before the run directory is made."""
    jax.eval_shape(lambda key: recipe.agent.init(key, spec), jax.random.key(0))


def build_loop(run: RunConfig, build: Build, sweep: Swept | None = None) -> Built:
    """The loop `run` trains on, with the recipe `build(context)` makes for its devices and
    length. `sweep` is `(Sweep, context -> (row -> recipe))`."""
    first = sizes(build)
    reward_gamma = float(first.discount) if run.normalize_rewards else None
    clip = clips_rewards(run.env) if run.clip_rewards is None else run.clip_rewards

    multi_host = distributed.initialize(run)  # Before anything starts JAX's devices.
    enable_compile_cache(run)
    # Host envs resolve without starting JAX's backend.
    kind, made = envs.with_params(envs.resolve(run.env), run.env_params, run.env)
    # The host loop's actor and learner take turns unless acting may use older parameters.
    staleness = int(first.acts_ahead) if run.max_staleness is None else run.max_staleness
    if kind == "host":  # Before `layout`, which starts JAX's backend.
        sebulba.prefer_sequential_cpu_ops(inline=staleness == 0)
    run = layout(run, host=kind == "host")
    mesh = anakin.make_mesh(run.num_devices)
    if kind == "host":
        return _host_loop(run, build, first, made, mesh, staleness, multi_host, reward_gamma, clip)
    _warn_unused_host_flags(run)
    env, env_params = made
    the_plan = run_plan(run, first, host=False)
    num_devices = mesh.devices.size
    spread = run.spread_runs and num_devices > 1
    # Spread runs each train whole on one device: the recipe is sized for one.
    context = Context(1 if spread else num_devices, the_plan.num_updates)
    recipe = build(context)
    check_agent(recipe, env_spec(env, env_params))
    swept = None if sweep is None else (sweep[0].values(run.num_seeds), sweep[1](context))
    loop = anakin.DeviceLoop(
        recipe,
        env,
        env_params,
        the_plan.updates_per_interval,
        mesh,
        run.seed,
        len(run_seeds(run)),
        sweep=swept,
        seeds_per_config=run.num_seeds,
        reward_gamma=reward_gamma,
        spread_runs=spread,
        clip_rewards=clip,
    )
    where = (
        f"runs spread over the devices, {recipe.num_envs} envs per run, on"
        if spread
        else f"{loop.envs_per_device} envs per device, on"
    )
    return Built(loop, the_plan, mesh, where)


def _host_loop(
    run: RunConfig,
    build: Build,
    first: Recipe,
    made: Any,
    mesh: Mesh,
    staleness: int,
    multi_host: bool,
    reward_gamma: float | None,
    clip: bool,
) -> Built:
    if multi_host:
        raise ValueError(
            f"{run.env} is a host (Python) environment: the host loop trains in one process. "
            "Multi-host training (--coordinator) runs the device loop on a JAX environment; "
            "train this one without --coordinator, one process per seed or configuration."
        )
    if run.sweep:  # The launcher runs them as processes; a bare loop cannot sweep.
        raise ValueError(
            f"{run.env} is a host (Python) environment, and a sweep in one program needs a "
            "JAX environment (the device loop); a host sweep trains as separate processes."
        )
    if run.spread_runs:
        print(
            f"warning: {run.env} is a host (Python) environment, which trains one run per "
            "process; not using --spread-runs.",
            file=sys.stderr,
        )
    if run.num_seeds != 1:
        raise ValueError(
            f"{run.env} is a host (Python) environment: the host loop trains one seed per "
            "process. Run seeds as separate processes (--seed N), or use a JAX environment "
            "to vmap them."
        )
    k = sebulba.updates_per_rollout(first.env_steps_per_update, first.acts_ahead)
    the_plan = run_plan(run, first, host=True)
    recipe = build(Context(mesh.devices.size, the_plan.num_updates))
    check_agent(recipe, envs.spec(run.env, run.env_params))
    if run.actors_on_workers:
        vec_env = _acting_workers(run, recipe, made, clip)
    else:
        vec_env = envs.host_vec_env(
            made, recipe.num_envs, run.env, run.host_envs, run.env_workers, run.ray_address
        )
    loop = sebulba.HostLoop(
        recipe,
        vec_env,
        k,
        the_plan.updates_per_interval // k,
        mesh,
        staleness,
        run.seed,
        reward_gamma=reward_gamma,
        clip_rewards=clip,
        actors_on_workers=run.actors_on_workers,
    )
    where = f"{recipe.num_envs} {run.host_envs} Python envs on the host"
    where = f"{getattr(vec_env, 'where', where)}, learner on"  # RayVecEnv names its workers.
    if run.actors_on_workers:
        where = where.replace(" Ray workers", " Ray workers that act")
    return Built(loop, the_plan, mesh, where)


def _acting_workers(run: RunConfig, recipe: Recipe, made: Any, clip: bool) -> Any:
    """`--actors-on-workers`: the host envs in Ray workers that also act (the agent pickled
    to each)."""
    if run.env.startswith("envpool:"):
        raise ValueError(
            f"--actors-on-workers needs Python envs that Ray workers hold; {run.env} runs in "
            "EnvPool's own threads. Drop --actors-on-workers (or --host-envs ray)."
        )
    from purerl.envs.ray_env import RayVecEnv

    acting = sebulba.Acting(recipe.agent, recipe.schedule.warmup_steps, clip, run.env_workers)
    return RayVecEnv(
        made,
        recipe.num_envs,
        run.env,
        run.env_workers,
        run.ray_address,
        worker=sebulba.ActingWorker,
        worker_args=(acting,),
    )


def _warn_unused_host_flags(run: RunConfig) -> None:
    unused = [
        flag
        for flag, given in (
            ("--host-envs", run.host_envs != "sync"),
            ("--max-staleness", run.max_staleness is not None),
            ("--rebuild-envs", run.rebuild_envs),
            ("--env-workers", run.env_workers != 2),
            ("--ray-address", run.ray_address is not None),
            ("--actors-on-workers", run.actors_on_workers),
        )
        if given
    ]
    if unused:
        print(
            f"warning: {run.env} is a JAX environment, so it runs on the device loop; "
            f"not using the host-loop option(s) {', '.join(unused)}.",
            file=sys.stderr,
        )
