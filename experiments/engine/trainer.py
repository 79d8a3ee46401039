"""The trainer: builds the loop an environment needs (the device loop for JAX envs, the host
loop for Python ones), runs its logging intervals through the run features, and writes the
summary. `train_agent` trains an agent a researcher wrote, with everything the built-in
agents get (logs, checkpoints, evaluation)."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from purerl.agents.registry import Context, Entry, Recipe
from purerl.core import Agent, per_device
from purerl.envs.host import HostEnvError
from purerl.experiments.engine import anakin, distributed
from purerl.experiments.engine.checkpoint import CHECKPOINT_DIR, Checkpoints, shapes
from purerl.experiments.engine.config import (
    Plan,
    RunConfig,
    default_run_dir,
    enable_compile_cache,
    layout,
    plan,
    run_seeds,
)
from purerl.experiments.engine.features import (
    CheckpointFeature,
    Evaluator,
    Feature,
    FiniteCheck,
    Interval,
    MetricFiles,
    PeriodicEvaluation,
    ProgressFeature,
    StopRequest,
    Writers,
    interval_row,
)
from purerl.experiments.engine.loop import Loop
from purerl.experiments.engine.plot import CURVE_FILE, plot, warm_up
from purerl.experiments.engine.policy import CONFIG_FILE, POLICY_FILE, save_policy, write_config
from purerl.replay import prioritized
from purerl.replay.base import DataPath, Schedule

Build = Callable[[Context], Recipe]


def train(entry: Entry, run: RunConfig, config: Any) -> dict[str, Any]:
    """Trains the registered agent `entry` with `config` (and `run.sweep`'s grid of its
    options, if any); returns the summary."""
    sweep = None
    if run.sweep:
        from purerl.experiments.engine.sweep import parse_sweep, with_values

        sweep = parse_sweep(run.sweep, config)
        names = sweep.names
        from purerl import envs

        if envs.resolve(run.env)[0] == "host":  # One run per process on the host loop.
            from purerl.experiments.engine.sweep import train_in_processes

            return train_in_processes(entry, run, config, sweep)
        if run.normalize_rewards and "gamma" in names:
            raise ValueError(
                "--normalize-rewards scales rewards by returns discounted with one gamma, so "
                "it cannot be combined with --sweep gamma; sweep gamma without it."
            )

        def swept(context: Context) -> Callable[[Any], Recipe]:
            return lambda row: entry.recipe(with_values(config, names, row), context)

        sweep = (sweep, swept)
    return _train(
        entry.name,
        run,
        config,
        lambda context: entry.recipe(config, context),
        config.env_steps_per_update,
        entry.off_policy,
        sweep,
        getattr(config, "gamma", 0.99),
    )


def train_agent(
    agent: Agent,
    data: DataPath,
    schedule: Schedule,
    run: RunConfig | None = None,
    *,
    num_envs: int = 8,
    name: str = "custom",
    off_policy: bool = False,
) -> dict[str, Any]:
    """Trains any `Agent(init, act, learn)` on either loop (chosen by `run.env`), with the
    logs, checkpoints, evaluation and summary the built-in agents get.

    Args:
      agent: your agent; make its `learn` average gradients over `purerl.core.DEVICE_AXIS`
        (`jax.lax.pmean`) to train data-parallel on several devices.
      data: its data path (`purerl.replay.on_policy()`, `uniform_replay(...)`, ...), sized
        per device.
      schedule: rollout length, gradient steps per update, warm-up steps.
      run: the run settings (`RunConfig(env=..., total_timesteps=...)`).
      num_envs: environments over all devices.
      name: the agent's name in the run directory and the summary.
      off_policy: it learns from replay, so the host loop may act ahead of learning.

    Returns:
      The summary dict (also written to `RUN_DIR/summary.json`).
    """
    run = run or RunConfig()
    if run.sweep:
        raise ValueError(
            "--sweep varies a registered agent's config options; an agent given to "
            "train_agent has none to vary. Build one agent per value and train each."
        )

    def build(context: Context) -> Recipe:
        envs = num_envs if context.host else per_device(num_envs, "num_envs", context.num_devices)
        return Recipe(agent, data, schedule, envs)

    return _train(name, run, None, build, num_envs * schedule.rollout_length, off_policy)


def _train(
    name: str,
    run: RunConfig,
    config: Any,
    build: Build,
    steps_per_update: int,
    off_policy: bool,
    sweep: tuple[Any, Callable[[Context], Any]] | None = None,
    gamma: float = 0.99,
) -> dict[str, Any]:
    loop, the_plan, mesh, where = build_loop(run, build, steps_per_update, off_policy, sweep, gamma)
    try:
        return _run(name, run, config, loop, the_plan, mesh, where, sweep and sweep[0])
    finally:
        loop.close()


def build_loop(
    run: RunConfig,
    build: Build,
    steps_per_update: int,
    off_policy: bool,
    sweep: tuple[Any, Callable[[Context], Any]] | None = None,
    gamma: float = 0.99,
) -> tuple[Loop, Plan, Any, str]:
    """The loop `run` trains on (device or host, by its env), its plan, the device mesh and
    a few words on where it runs. `sweep` is `(Sweep, context -> (row -> recipe))`; `gamma`
    discounts the returns whose spread `--normalize-rewards` divides rewards by."""
    from purerl import envs
    from purerl.envs.atari import is_atari, is_envpool_atari

    reward_gamma = float(gamma) if run.normalize_rewards else None
    atari = is_atari(run.env) or is_envpool_atari(run.env)
    clip_rewards = atari if run.clip_rewards is None else run.clip_rewards

    multi_host = distributed.initialize(run)  # Before anything starts JAX's devices.
    enable_compile_cache(run)
    # Host envs resolve without starting JAX's backend.
    kind, made = envs.with_params(envs.resolve(run.env), run.env_params, run.env)
    # The host loop's actor and learner take turns unless acting may use older parameters.
    staleness = int(off_policy) if run.max_staleness is None else run.max_staleness
    if kind == "host":  # Before `layout`, which starts JAX's backend.
        from purerl.experiments.engine import sebulba

        sebulba.prefer_sequential_cpu_ops(inline=staleness == 0)
    run = layout(run, host=kind == "host")
    if kind == "host" and multi_host:
        raise ValueError(
            f"{run.env} is a host (Python) environment: the host loop trains in one process. "
            "Multi-host training (--coordinator) runs the device loop on a JAX environment; "
            "train this one without --coordinator, one process per seed or configuration."
        )
    mesh = anakin.make_mesh(run.num_devices)
    num_devices = mesh.devices.size
    loop: Loop
    if kind == "host":
        if run.sweep:  # `train` runs them as processes; a bare loop cannot sweep.
            raise ValueError(
                f"{run.env} is a host (Python) environment, and a sweep in one program needs a "
                "JAX environment (the device loop); `train` runs a host sweep as processes."
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
        k = sebulba.updates_per_rollout(steps_per_update, off_policy)
        the_plan = run_plan(run, steps_per_update, off_policy, host=True)
        recipe = build(Context(num_devices, the_plan.num_updates, host=True))
        vec_env = envs.host_vec_env(made, recipe.num_envs, run.env, run.host_envs)
        loop = sebulba.HostLoop(
            recipe,
            vec_env,
            k,
            the_plan.updates_per_interval // k,
            mesh,
            staleness,
            run.seed,
            reward_gamma=reward_gamma,
            clip_rewards=clip_rewards,
        )
        where = f"{recipe.num_envs} {run.host_envs} Python envs on the host, learner on"
    else:
        unused = [
            flag
            for flag, given in (
                ("--host-envs", run.host_envs != "sync"),
                ("--max-staleness", run.max_staleness is not None),
                ("--rebuild-envs", run.rebuild_envs),
            )
            if given
        ]
        if unused:
            print(
                f"warning: {run.env} is a JAX environment, so it runs on the device loop; "
                f"not using the host-loop option(s) {', '.join(unused)}.",
                file=sys.stderr,
            )
        env, env_params = made
        the_plan = run_plan(run, steps_per_update, off_policy, host=False)
        spread = run.spread_runs and num_devices > 1
        # Spread runs each train whole on one device: the recipe is sized for one.
        learners = 1 if spread else num_devices
        context = Context(learners, the_plan.num_updates, host=False)
        recipe = build(context)
        swept = None
        if sweep is not None:
            swept = (sweep[0].values(run.num_seeds), sweep[1](context))
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
            clip_rewards=clip_rewards,
        )
        where = (
            f"runs spread over the devices, {recipe.num_envs} envs per run, on"
            if spread
            else f"{recipe.num_envs} envs per device, on"
        )
    return loop, the_plan, mesh, where


def run_plan(run: RunConfig, steps_per_update: int, off_policy: bool, host: bool) -> Plan:
    """How `run` divides into updates and logging intervals, on the host loop (each interval
    a whole number of the updates one rollout feeds) or the device loop."""
    from purerl.experiments.engine import sebulba

    k = sebulba.updates_per_rollout(steps_per_update, off_policy) if host else 1
    return plan(run.total_timesteps, steps_per_update, run.num_logs, multiple=k)


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


def _restore(checkpoints: Checkpoints, runner: Any, run: RunConfig, config: Any) -> Any:
    """The newest checkpoint's `(runner, host)`; where it does not match, the error says how
    to load an Atari run saved before the default torso changed (`policy.torso_hint`). A
    checkpoint whose prioritised replay has the sum-tree layout of earlier purerl versions
    is converted exactly (`replay.prioritized.from_legacy`)."""

    def explain() -> str:
        from purerl import envs
        from purerl.experiments.engine.policy import torso_hint

        return torso_hint(config, envs.spec(run.env, run.env_params).observation_space).strip()

    old = prioritized.legacy_target(runner)
    if old is not None:  # Which layout the checkpoint has, from its metadata alone.
        saved = checkpoints.saved_shapes()
        if saved is not None and saved != shapes(runner) and saved == shapes(old):
            restored, host = checkpoints.restore_latest(old, explain)
            return prioritized.from_legacy(restored, runner), host
    return checkpoints.restore_latest(runner, explain)


def checkpointed_agent_states(entry: Entry, run: RunConfig, config: Any) -> tuple[Any, int]:
    """The agent states `[seeds, ...]` in the newest checkpoint of the run `run.run_dir`
    (made with `entry`, `config`), and the env steps (per seed) it was saved after."""
    off_policy = entry.off_policy
    loop, the_plan, _, _ = build_loop(
        run, lambda context: entry.recipe(config, context), config.env_steps_per_update, off_policy
    )
    try:
        runner = loop.init()
        checkpoints = Checkpoints(Path(run.run_dir), run.keep_checkpoints)
        try:
            runner, host = _restore(checkpoints, runner, run, config)
        finally:
            checkpoints.close()
        steps = (host["interval"] + 1) * the_plan.updates_per_interval * the_plan.steps_per_update
        return jax.device_get(loop.agent_states(runner)), steps
    finally:
        loop.close()


def _init_from(loop: Loop, runner: Any, run: RunConfig) -> Any:
    """`runner` with its agent states taken, where they fit, from the run `run.init_from`."""
    from purerl.experiments.engine.policy import load_agent

    _, old, saved = load_agent(run.init_from)
    new = jax.device_get(loop.agent_states(runner))
    old_seeds = jax.tree.leaves(old)[0].shape[0]
    seeds = jax.tree.leaves(new)[0].shape[0]
    if old_seeds not in (1, seeds):
        raise ValueError(
            f"--init-from {run.init_from} has {old_seeds} seeds and this run {seeds}: give "
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

    for name, (mine, theirs) in parts.items():
        if fits(mine, theirs):
            merged[name] = jax.tree.map(
                lambda x, y: np.broadcast_to(np.asarray(y), np.shape(x)), mine, theirs
            )
            copied.append(name)
        else:
            merged[name] = mine
            fresh.append(name)
    if not any(  # Counters alone (steps) are no start: some parameters must fit.
        any(np.ndim(x) > 1 for x in jax.tree.leaves(parts[name][0])) for name in copied
    ):
        raise ValueError(
            f"--init-from {run.init_from}: nothing of its {saved['agent']} agent fits this "
            "run's (different networks or spaces?); start without it."
        )
    states = new.replace(**merged) if is_struct else merged["agent state"]
    print(
        f"note: starting from {run.init_from}'s {saved['agent']} agent: copied "
        f"{', '.join(copied)}" + (f"; fresh (did not fit): {', '.join(fresh)}" if fresh else ""),
        file=sys.stderr,
    )
    return loop.with_agent_states(runner, states)


def _warm_plot() -> None:
    try:
        warm_up()
    except Exception:  # Only a head start; `plot` reports any real problem.
        pass


def _strict_json(value: Any) -> Any:
    """`value` with NaN and infinities as None (`null`), which strict JSON parsers accept."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def holds_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds something of a run to protect: a checkpoint, a saved policy or
    a summary (a directory with only the config of a start that failed holds none)."""
    checkpoints = run_dir / CHECKPOINT_DIR
    return (
        (run_dir / "summary.json").exists()
        or (run_dir / POLICY_FILE).exists()
        or (checkpoints.is_dir() and any(checkpoints.iterdir()))
    )


def _run_dir(name: str, run: RunConfig, config: Any, write: bool = True) -> Path:
    """The run's directory, checked (every process checks) and, with `write`, made and
    given the config (process 0 only in a multi-host run)."""
    if run.resume:  # Its new length is written once its checkpoint has loaded (`_extend`).
        return Path(run.resume)
    run_dir = Path(run.run_dir) if run.run_dir else default_run_dir(name, run.env)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file, not a directory; choose another.")
    if holds_run(run_dir):
        raise ValueError(
            f"{run_dir} already holds a run. Continue it with --resume {run_dir}, or "
            "choose another --run-dir."
        )
    if not write:
        return run_dir
    if (run_dir / CONFIG_FILE).exists():  # A start that failed before training: not a run.
        print(
            f"note: {run_dir} holds the config of a run that never trained (no checkpoint, "
            "policy or summary); starting afresh there.",
            file=sys.stderr,
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, name, run, config)
    return run_dir


def _extend(run_dir: Path, run: RunConfig) -> None:
    """Write a resumed run's length into its config, where `--total-timesteps` extended it.
    Called after its checkpoint restored: a resume that fails leaves the config as it was,
    so the same command can be retried."""
    path = run_dir / CONFIG_FILE
    saved = json.loads(path.read_text())
    length = {"total_timesteps": run.total_timesteps, "num_logs": run.num_logs}
    if any(saved["run"].get(k) != v for k, v in length.items()):
        saved["run"].update(length)
        path.write_text(json.dumps(saved, indent=2))


def _run(
    name: str,
    run: RunConfig,
    config: Any,
    loop: Loop,
    the_plan: Plan,
    mesh: Any,
    where: str,
    sweep: Any = None,
) -> dict[str, Any]:
    runs = len(run_seeds(run))  # Runs vmapped together: seeds times sweep configurations.
    # Multi-host: every process trains; process 0 alone writes the run directory and logs.
    primary = distributed.is_primary()
    if distributed.process_count() > 1 and not run.resume and not run.run_dir:
        raise ValueError(
            "A multi-host run needs --run-dir (the same on every process, on storage they all "
            "see): its default name holds the start time, which the processes may not share."
        )
    if run.eval_epsilon:  # Refused now, not after training.
        from purerl import envs
        from purerl.experiments.engine.evaluate import check_eval_epsilon

        check_eval_epsilon(run.eval_epsilon, envs.spec(run.env, run.env_params).action_space)
    # The saved config names the devices it ran on, so its checkpoints load back alike.
    # How the processes were launched is not the run's: loading it needs no coordinator.
    saved_run = dataclasses.replace(
        run,
        num_devices=int(mesh.devices.size),
        spread_runs=bool(getattr(loop, "spread", run.spread_runs)),
        coordinator=None,
        num_processes=None,
        process_id=None,
    )
    run_dir = _run_dir(name, saved_run, config, write=primary)
    distributed.barrier("purerl: run directory made")
    quiet = run.quiet or not primary
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    device = mesh.devices.flat[0]
    configs = f" x {runs // run.num_seeds} configurations" if sweep else ""
    env_params = f" ({', '.join(run.env_params)})" if run.env_params else ""
    say(
        f"purerl {name} on {run.env}{env_params}: {the_plan.total_steps:,} steps x {run.num_seeds} "
        f"seed(s){configs}; {loop.name}: {where} {mesh.devices.size} {device.platform} "
        f"device(s); run dir {run_dir}"
    )
    t0 = time.perf_counter()
    try:
        runner = loop.init()
    except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError) as e:
        if not sweep:
            raise
        raise ValueError(
            f"--sweep {', '.join(sweep.names)}: {name} decides its program's control flow or "
            "shapes by one of these options, so it cannot be swept in one program; run its "
            "values as separate runs."
        ) from e
    compile_seconds = time.perf_counter() - t0

    # Made on first use: orbax's import and manager cost ~0.4 s a short default run skips.
    checkpoints = Checkpoints(run_dir, run.keep_checkpoints) if run.resume else None
    host: dict[str, Any] = {}
    start, train_seconds = 0, 0.0
    if run.init_from and not run.resume:
        runner = _init_from(loop, runner, run)
    if run.resume:
        runner, host = _restore(checkpoints, runner, run, config)
        message = loop.load_host_state(host.get("loop", {}), rebuild=run.rebuild_envs)
        if message:
            print(message, file=sys.stderr)
        start, train_seconds = host["interval"] + 1, host["train_seconds"]

    evaluator: list[Evaluator] = []  # Built (and compiled) when first needed.

    def get_evaluator() -> Evaluator:
        if not evaluator:
            evaluator.append(Evaluator(loop, run))
        return evaluator[0]

    per_interval = the_plan.updates_per_interval * the_plan.steps_per_update
    files = MetricFiles(run_dir if primary else None)
    features: list[Feature] = [files, FiniteCheck(name, run_dir)]
    writers = progress = None
    if primary:
        writers = Writers(run_dir, run, bool(start))
        progress = ProgressFeature(the_plan.total_steps, run.quiet, start * per_interval)
        features += [writers, progress]
    evaluation = PeriodicEvaluation(
        run_dir, run, get_evaluator, loop.agent_states, writers, progress
    )
    features.append(evaluation)
    stop = StopRequest(run_dir, lambda: saver.checkpoints is not None)

    def host_state(interval: Interval) -> dict[str, Any]:
        return {
            "interval": interval.index,
            "train_seconds": train_seconds,
            "loop": loop.host_state(),
            "features": {f.key: f.state() for f in features if f.key},
        }

    saver = CheckpointFeature(run_dir, run, the_plan.total_steps, stop, host_state, checkpoints)
    features += [saver, stop]  # Ctrl-C stops after the checkpoint is saved.
    if run.resume:
        if "features" not in host:
            raise ValueError(
                f"The checkpoint in {run_dir / 'checkpoints'} was written by an earlier purerl "
                "whose checkpoints this version cannot continue; start a new run."
            )
        for f in features:
            if f.key:
                f.load(host["features"][f.key])
        if primary:
            _extend(run_dir, saved_run)
        say(f"  resumed from the checkpoint after {start * per_interval:,} steps")

    # Matplotlib's import and first drawing run beside training, not after it.
    warm = threading.Thread(target=_warm_plot, daemon=True) if run.plot and primary else None
    if warm is not None:
        warm.start()
    try:
        for index in range(start, the_plan.num_intervals):
            t = time.perf_counter()
            runner, output = loop.step(runner)
            train_seconds += time.perf_counter() - t
            steps = (index + 1) * per_interval
            row = interval_row(output, steps, steps * runs / train_seconds)
            last = index == the_plan.num_intervals - 1
            interval = Interval(index, steps, steps - per_interval, last, output, row, runner)
            for feature in features:
                feature.on_interval(interval)
    except HostEnvError as e:
        raise HostEnvError(
            f"{e}. "
            + (
                f"The last checkpoint in {run_dir / 'checkpoints'} is intact: fix the "
                f"environment and continue with --resume {run_dir}."
                if saver.saved()
                else f"No checkpoint had been saved; the metrics so far are in {run_dir}."
            )
        ) from e
    finally:
        for feature in reversed(features):
            feature.close()

    final = files.final_return()
    final_states = loop.agent_states(runner)  # Collective with runs over hosts.
    if not primary:  # Process 0 evaluates and writes the policy, summary and plot.
        print(
            f"process {jax.process_index()} of {jax.process_count()}: done; final return "
            f"{float(np.mean(final)):.2f}, run dir {run_dir} (written by process 0)",
            flush=True,
        )
        return {"agent": name, "run_dir": str(run_dir), "final_return": final.tolist()}
    eval_returns = np.zeros((0,))
    if run.eval_episodes:
        eval_returns = get_evaluator()(final_states)
    save_policy(run_dir, final_states)
    summary = {
        "agent": name,
        "env": run.env,
        "env_params": list(run.env_params),
        "run_dir": str(run_dir),
        "total_timesteps": the_plan.total_steps,
        "requested_timesteps": run.total_timesteps,
        "num_seeds": run.num_seeds,
        "seeds": run_seeds(run),
        "final_return": [float(x) for x in final],
        "final_return_mean": float(np.mean(final)),
        "eval_episodes": run.eval_episodes,
        "eval_return": [float(x) for x in eval_returns],
        "eval_return_mean": float(np.mean(eval_returns)) if run.eval_episodes else float("nan"),
        "periodic_eval": evaluation.rows,
        "loop": loop.kind,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "steps_per_second": the_plan.total_steps * runs / train_seconds,
        "devices": {
            "count": int(mesh.devices.size),
            "processes": jax.process_count(),
            "kind": device.device_kind,
            "platform": device.platform,
        },
        "updates": the_plan.num_updates,
        "steps_per_update": the_plan.steps_per_update,
        "jax_version": jax.__version__,
        "run_config": dataclasses.asdict(run),
        "agent_config": dataclasses.asdict(config) if config is not None else None,
    }
    if sweep is not None:
        from purerl.experiments.engine.sweep import write_sweep

        seeds = run_seeds(run)[: run.num_seeds]
        summary["sweep"] = write_sweep(run_dir, sweep, seeds, final, eval_returns)
        summary["sweep_configs"] = [dict(zip(sweep.names, p, strict=True)) for p in sweep.grid]
    (run_dir / "summary.json").write_text(json.dumps(_strict_json(summary), indent=2))
    if run.plot:
        try:
            if warm is not None:
                warm.join()
            plot([run_dir], run_dir / CURVE_FILE)
        except Exception as e:  # A plotting problem must not fail a finished run.
            print(f"warning: could not draw {run_dir / CURVE_FILE}: {e}", file=sys.stderr)
    evaluated = f"eval return {summary['eval_return_mean']:.2f}, " if run.eval_episodes else ""
    if sweep is not None and not run.quiet:
        print("sweep, best first (mean final return over seeds):")
        for row in summary["sweep"]:
            values = ", ".join(f"{k}={row[k]:g}" for k in sweep.names)
            print(f"  {values}: {row['final_return_mean']:.2f}")
    print(  # The one line --quiet keeps.
        f"done: final return {summary['final_return_mean']:.2f} "
        f"(per seed {', '.join(f'{x:.1f}' for x in final)}), {evaluated}"
        f"{summary['steps_per_second']:,.0f} steps/s, compile {compile_seconds:.1f}s, "
        f"train {train_seconds:.1f}s -> {run_dir / 'summary.json'}",
        flush=True,
    )
    return summary
