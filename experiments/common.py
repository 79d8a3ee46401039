"""What every experiment script shares: the run settings, the interval loop on the host,
progress lines, and the run summary."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from purerl.agents.base import Agent
from purerl.envs.host import HostEnvError
from purerl.experiments import anakin
from purerl.experiments.checkpoint import Checkpoints, decode_history, encode_history
from purerl.experiments.plot import CURVE_FILE, RETURNS_FILE, plot, write_returns
from purerl.experiments.policy import CONFIG_FILE, eval_key, save_policy, write_config
from purerl.replay.uniform import Buffer

DEFAULT_CHECKPOINT_SECONDS = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """How to run an experiment (the agent's own hyperparameters live in its config).

    Attributes:
      env: environment name. JAX environments run on the device loop: a gymnax id
        (CartPole-v1), a Gymnasium functional JAX id (phys2d/CartPole-v1), or
        module.path:ClassOrFactory for your own. Python ones run on the host loop:
        gymnasium:ID (gymnasium:CartPole-v1, gymnasium:my_pkg.envs:MyEnv-v0), or
        module.path:ClassOrFactory of a gymnasium.Env or dm_env.Environment.
      total_timesteps: environment steps per seed (over all devices); rounded up to
        whole logging intervals.
      seed: the first seed; seed i of --num-seeds is seed + i.
      num_seeds: independent seeds trained together, vmapped in one program.
      num_devices: local devices to run data-parallel on (default: all).
      num_logs: logging intervals; the host sees the device once per interval.
      run_dir: where the summary and metrics go (default: runs/AGENT_ENV_TIME).
      quiet: print only the summary.
      plot: draw RUN_DIR/learning_curve.png at the end (matplotlib: about 0.7 s; --no-plot
        skips it); `python -m purerl.experiments.plot RUN_DIR` draws it any time.
      eval_episodes: greedy/deterministic evaluation episodes per seed at the end, on
        fresh environment instances (0: none; its compile costs about a second).
      checkpoint_every: save the whole training state every this many env steps (per
        seed), at the end of the logging interval that crosses it, and at the end;
        default a tenth of the run but at most once a minute (a run shorter than a
        minute keeps none); 0: never. Ctrl-C also saves one, then stops.
      keep_checkpoints: how many of the newest checkpoints to keep.
      resume: a run directory to continue from its newest checkpoint, with the configs it
        was started with (the other flags are not used).
      config: a YAML file of option values by flag name; flags given on the command line
        override it. The resolved configs are saved in RUN_DIR/config.json.
      host_envs: host loop only: step the Python envs in this process ("sync") or one
        subprocess each ("async", for slow envs; not bit-identical on resume).
      max_staleness: host loop only: how many learner updates the acting parameters may
        lag; 0 alternates actor and learner, 1 overlaps them. Default: 0 for on-policy
        agents (PPO; its clipped ratio learns worse from stale rollouts: on Gymnasium
        CartPole 2 of 3 seeds missed 475 with 1, none with 0), 1 for off-policy ones (DQN).
      eval_every: also evaluate every this many env steps (at the end of the logging
        interval that crosses it), with --eval-episodes episodes (10 if that is 0); logged
        apart from training returns, to RUN_DIR/eval.csv and TensorBoard's eval/. 0: never.
      tensorboard: write TensorBoard event files to RUN_DIR/tensorboard.
      wandb_project: also log to this Weights & Biases project (needs `pip install wandb`).
    """

    env: str = "CartPole-v1"
    total_timesteps: int = 500_000
    seed: int = 0
    num_seeds: int = 1
    num_devices: int | None = None
    num_logs: int = 20
    run_dir: str | None = None
    quiet: bool = False
    plot: bool = True
    eval_episodes: int = 0
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    resume: str | None = None
    config: str | None = None
    host_envs: Literal["sync", "async"] = "sync"
    max_staleness: int | None = None
    eval_every: int = 0
    tensorboard: bool = True
    wandb_project: str | None = None

    def __post_init__(self) -> None:
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every must be 0 or more; got {self.checkpoint_every}.")
        if self.keep_checkpoints < 1:
            raise ValueError(f"--keep-checkpoints must be positive; got {self.keep_checkpoints}.")
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be 0 or more; got {self.eval_every}.")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise ValueError(f"--max-staleness must be 0 or more; got {self.max_staleness}.")
        if self.eval_episodes < 0:
            raise ValueError(f"--eval-episodes must be 0 or more; got {self.eval_episodes}.")
        for name in ("total_timesteps", "num_seeds", "num_logs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a positive integer; "
                    f"got {getattr(self, name)}."
                )


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run's steps divide into updates and logging intervals (all derived)."""

    steps_per_update: int  # Env steps per update, per seed, over all devices.
    updates_per_interval: int
    num_intervals: int

    @property
    def num_updates(self) -> int:
        return self.updates_per_interval * self.num_intervals

    @property
    def total_steps(self) -> int:
        return self.num_updates * self.steps_per_update


def plan(total_timesteps: int, steps_per_update: int, num_logs: int, multiple: int = 1) -> Plan:
    """Splits a budget into `num_logs` equal intervals of whole updates (rounding up), each
    a whole number of `multiple` updates."""
    num_updates = max(1, math.ceil(total_timesteps / steps_per_update))
    per_interval = math.ceil(num_updates / min(num_logs, num_updates))
    per_interval = multiple * math.ceil(per_interval / multiple)
    return Plan(steps_per_update, per_interval, math.ceil(num_updates / per_interval))


class Recipe(NamedTuple):
    """How an agent trains, as either loop runs it.

    Attributes:
      agent: the agent, made with `axis_name=anakin.DEVICE_AXIS`.
      num_envs: environments per device (device loop) or in all (host loop).
      rollout_length: vector env steps per learner update.
      buffer: the replay buffer (per device) of an off-policy agent; None on-policy.
    """

    agent: Agent
    num_envs: int
    rollout_length: int
    buffer: Buffer | None = None


class _DeviceLoop:
    """The device loop (`anakin`) behind the interface `train` drives, as `HostLoop` is."""

    name = "device loop"

    def __init__(self, recipe: Recipe, env: Any, env_params: Any, the_plan: Plan, mesh, run):
        self.env, self.env_params, self.run = env, env_params, run
        if recipe.buffer is None:
            update = functools.partial(
                anakin.make_on_policy_update, recipe.agent, num_steps=recipe.rollout_length
            )
        else:
            update = functools.partial(
                anakin.make_off_policy_update,
                recipe.agent,
                buffer=recipe.buffer,
                num_steps=recipe.rollout_length,
            )
        self.loop = anakin.make_loop(
            recipe.agent,
            env,
            env_params,
            lambda vec_env: update(env=vec_env, env_params=env_params),
            recipe.num_envs,
            the_plan.updates_per_interval,
            mesh,
            recipe.buffer,
        )

    def init(self) -> Any:
        # Init finishes before the step compiles, so the two never compete for the 2 cores.
        runner = jax.block_until_ready(
            self.loop.init(anakin.seed_keys(self.run.seed, self.run.num_seeds))
        )
        self._step = self.loop.step.lower(runner).compile()
        return runner

    def step(self, runner: Any) -> tuple[Any, dict[str, np.ndarray]]:
        runner, metrics = self._step(runner)
        # Blocking here also keeps un-awaited collectives from piling up (DESIGN.md).
        return runner, jax.device_get(metrics)

    def host_state(self) -> dict[str, Any]:
        return {}

    def load_host_state(self, host: dict[str, Any]) -> str | None:
        return None

    @staticmethod
    def agent_states(runner: Any) -> Any:
        return jax.tree.map(lambda x: x[0], runner.agent_state)  # Device 0: [S, ...].

    def close(self) -> None:
        pass


def default_run_dir(agent: str, env: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{agent}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', env)}_{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def train(
    agent_name: str,
    run: RunConfig,
    agent_config: Any,
    build: Callable[[int, Plan, bool], Recipe],
    steps_per_update: int,
    off_policy: bool = False,
) -> dict[str, Any]:
    """Trains on the loop the environment needs (device loop for JAX envs, host loop for
    Python ones) and writes `RUN_DIR/summary.json` and `metrics.csv`.

    Args:
      agent_name: "ppo", "dqn", ...
      run: the run settings (`run.env` names the environment).
      agent_config: the agent's config (recorded in the summary).
      build: `(num_devices, plan, host) -> Recipe`; `host` is True on the host loop.
      steps_per_update: env steps per learner update per seed, over all devices.
      off_policy: the agent learns from replay (the host loop then sends the learner a few
        updates' steps at a time).

    Returns:
      The summary dict.
    """
    from purerl import envs

    kind, made = envs.resolve(run.env)  # Host envs resolve without starting JAX's backend.
    if kind == "host":
        from purerl.experiments import sebulba

        sebulba.prefer_sequential_cpu_ops()
    mesh = anakin.make_mesh(run.num_devices)
    num_devices = mesh.devices.size
    if kind == "host":
        if run.num_seeds != 1:
            raise ValueError(
                f"{run.env} is a host (Python) environment: the host loop trains one seed per "
                "process. Run seeds as separate processes (--seed N), or use a JAX environment "
                "to vmap them."
            )
        k = sebulba.updates_per_rollout(steps_per_update, off_policy)
        the_plan = plan(run.total_timesteps, steps_per_update, run.num_logs, multiple=k)
        recipe = build(num_devices, the_plan, True)
        learn = (
            anakin.on_policy_learn(recipe.agent)
            if recipe.buffer is None
            else anakin.off_policy_learn(recipe.agent, recipe.buffer)
        )
        vec_env = envs.HostVecEnv(made, recipe.num_envs, run.env, run.host_envs)
        loop: Any = sebulba.HostLoop(
            recipe.agent,
            vec_env,
            learn,
            recipe.rollout_length,
            k,
            the_plan.updates_per_interval // k,
            mesh,
            recipe.buffer,
            (int(off_policy) if run.max_staleness is None else run.max_staleness),
            run.seed,
        )
        where = f"{recipe.num_envs} {run.host_envs} Python envs on the host, learner on"
    else:
        unused = [
            flag
            for flag, given in (
                ("--host-envs", run.host_envs != "sync"),
                ("--max-staleness", run.max_staleness is not None),
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
        the_plan = plan(run.total_timesteps, steps_per_update, run.num_logs)
        recipe = build(num_devices, the_plan, False)
        loop = _DeviceLoop(recipe, env, env_params, the_plan, mesh, run)
        where = f"{recipe.num_envs} envs per device, on"
    try:
        return _train(agent_name, run, agent_config, loop, recipe.agent, the_plan, mesh, where)
    finally:
        loop.close()


def _train(
    agent_name: str,
    run: RunConfig,
    agent_config: Any,
    loop: Any,
    agent: Agent,
    the_plan: Plan,
    mesh: Any,
    where: str,
) -> dict[str, Any]:
    num_devices = mesh.devices.size
    if run.resume:
        run_dir = Path(run.resume)
    else:
        run_dir = Path(run.run_dir) if run.run_dir else default_run_dir(agent_name, run.env)
        if (run_dir / CONFIG_FILE).exists():
            raise ValueError(
                f"{run_dir} already holds a run. Continue it with --resume {run_dir}, or "
                "choose another --run-dir."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, agent_name, run, agent_config)
    from purerl.experiments.logger import MetricsWriter, Progress

    say = (lambda *a: None) if run.quiet else (lambda *a: print(*a, flush=True))
    device = mesh.devices.flat[0]
    say(
        f"purerl {agent_name} on {run.env}: {the_plan.total_steps:,} steps x {run.num_seeds} "
        f"seed(s); {loop.name}: {where} {num_devices} {device.platform} device(s); "
        f"run dir {run_dir}"
    )
    every = run.checkpoint_every
    if every is None:
        every = max(1, the_plan.total_steps // 10)
    # Made on first use: orbax's import and manager cost ~0.4 s a short default run skips.
    checkpoints = Checkpoints(run_dir, run.keep_checkpoints) if run.resume else None

    t0 = time.perf_counter()
    runner = loop.init()
    compile_seconds = time.perf_counter() - t0

    history: list[dict[str, np.ndarray]] = []
    rows: list[dict[str, float]] = []
    train_seconds = 0.0
    start = 0
    if run.resume:
        runner, host = checkpoints.restore_latest(runner)
        warning = loop.load_host_state(host.get("loop", {}))
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        start, train_seconds = host["interval"] + 1, host["train_seconds"]
        history, rows = decode_history(host["history"]), host["rows"]
        say(f"  resumed from the checkpoint after {int(rows[-1]['step']):,} steps")
    eval_rows = list(host.get("eval_rows", [])) if run.resume else []
    seed_returns = [_seed_returns(h) for h in history]
    writer = MetricsWriter(
        run_dir, run.tensorboard, run.wandb_project, {"run": dataclasses.asdict(run)}, bool(start)
    )
    progress = Progress(the_plan.total_steps, run.quiet, int(rows[-1]["step"]) if rows else 0)
    evaluator = None
    stop = _StopRequest()
    last_save = time.perf_counter()
    try:
        for interval in range(start, the_plan.num_intervals):
            t = time.perf_counter()
            runner, metrics = loop.step(runner)
            train_seconds += time.perf_counter() - t
            metrics = {k: np.asarray(v)[0] for k, v in metrics.items()}  # [U, S]
            history.append(metrics)
            steps = (interval + 1) * the_plan.updates_per_interval * the_plan.steps_per_update
            row = _interval_row(metrics, steps, steps * run.num_seeds / train_seconds)
            rows.append(row)
            # Rewritten each interval, so they can be read (and plotted) mid-run.
            _write_csv(run_dir / "metrics.csv", rows)
            seed_returns.append(_seed_returns(metrics))
            write_returns(run_dir / RETURNS_FILE, [r["step"] for r in rows], np.stack(seed_returns))
            _check_finite(metrics, agent_name, interval, run_dir)
            writer.write(row)
            progress.update(steps, row)
            last = interval == the_plan.num_intervals - 1
            previous = steps - the_plan.updates_per_interval * the_plan.steps_per_update
            if run.eval_every and steps // run.eval_every > previous // run.eval_every:
                if evaluator is None:
                    evaluator = _Evaluator(agent, loop, run)
                returns = evaluator(loop.agent_states(runner), steps)
                eval_rows.append(
                    {"step": steps, "eval_return": float(np.mean(returns))}
                    | {f"eval_return_seed{run.seed + i}": float(r) for i, r in enumerate(returns)}
                )
                _write_csv(run_dir / "eval.csv", eval_rows)
                writer.write(eval_rows[-1], "eval")
                progress.say(f"  eval after {steps:,} steps: return {np.mean(returns):.2f}")
            periodic = bool(every) and steps // every > previous // every
            if run.checkpoint_every is None:  # The default: no more than once a minute.
                periodic &= time.perf_counter() - last_save >= DEFAULT_CHECKPOINT_SECONDS
            # The last interval saves when asked to, or when the run saved before.
            final = last and (run.checkpoint_every or checkpoints is not None)
            if every and (final or stop.requested or periodic):
                last_save = time.perf_counter()
                if checkpoints is None:
                    checkpoints = Checkpoints(run_dir, run.keep_checkpoints)
                host = {
                    "interval": interval,
                    "train_seconds": train_seconds,
                    "history": encode_history(history),
                    "rows": rows,
                    "loop": loop.host_state(),
                    "eval_rows": eval_rows,
                }
                checkpoints.save(interval, runner, host)
            if stop.requested:
                raise KeyboardInterrupt(
                    f"Stopped after {steps:,} steps; continue with --resume {run_dir}"
                    if checkpoints
                    else f"Stopped after {steps:,} steps (checkpoints were off)."
                )
    except HostEnvError as e:
        saved = checkpoints is not None and checkpoints.manager.latest_step() is not None
        raise HostEnvError(
            f"{e}. "
            + (
                f"The last checkpoint in {run_dir / 'checkpoints'} is intact: fix the "
                f"environment and continue with --resume {run_dir}."
                if saved
                else f"No checkpoint had been saved; the metrics so far are in {run_dir}."
            )
        ) from e
    finally:
        stop.restore()
        progress.close()
        writer.close()
        if checkpoints:
            checkpoints.close()  # Lets a save in flight finish, whatever stopped the run.

    final_states = loop.agent_states(runner)
    eval_returns = np.zeros((0,))
    if run.eval_episodes:
        evaluator = evaluator or _Evaluator(agent, loop, run)
        eval_returns = evaluator(final_states)
    save_policy(run_dir, final_states)

    stacked = {k: np.concatenate([h[k] for h in history]) for k in history[0]}
    final = _final_return(stacked)
    summary = {
        "agent": agent_name,
        "env": run.env,
        "run_dir": str(run_dir),
        "total_timesteps": the_plan.total_steps,
        "requested_timesteps": run.total_timesteps,
        "num_seeds": run.num_seeds,
        "seeds": [run.seed + i for i in range(run.num_seeds)],
        "final_return": [float(x) for x in final],
        "final_return_mean": float(np.mean(final)),
        "eval_episodes": run.eval_episodes,
        "eval_return": [float(x) for x in eval_returns],
        "eval_return_mean": float(np.mean(eval_returns)) if run.eval_episodes else float("nan"),
        "periodic_eval": eval_rows,
        "loop": "device" if isinstance(loop, _DeviceLoop) else "host",
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "steps_per_second": the_plan.total_steps * run.num_seeds / train_seconds,
        "devices": {
            "count": int(num_devices),
            "kind": device.device_kind,
            "platform": device.platform,
        },
        "updates": the_plan.num_updates,
        "steps_per_update": the_plan.steps_per_update,
        "jax_version": jax.__version__,
        "run_config": dataclasses.asdict(run),
        "agent_config": dataclasses.asdict(agent_config),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if run.plot:
        try:
            plot([run_dir], run_dir / CURVE_FILE)
        except Exception as e:  # A plotting problem must not fail a finished run.
            print(f"warning: could not draw {run_dir / CURVE_FILE}: {e}", file=sys.stderr)
    evaluated = f"eval return {summary['eval_return_mean']:.2f}, " if run.eval_episodes else ""
    say(
        f"done: final return {summary['final_return_mean']:.2f} "
        f"(per seed {', '.join(f'{x:.1f}' for x in final)}), {evaluated}"
        f"{summary['steps_per_second']:,.0f} steps/s, compile {compile_seconds:.1f}s, "
        f"train {train_seconds:.1f}s -> {run_dir / 'summary.json'}"
    )
    return summary


class _StopRequest:
    """Turns Ctrl-C into a request honoured at the end of the logging interval, so the
    run can save a checkpoint first. (Only in the main thread, where signals arrive.)"""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # A second Ctrl-C: stop now.
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nstopping at the end of this logging interval (Ctrl-C again to abort)...",
            file=sys.stderr,
            flush=True,
        )

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _Evaluator:
    """Deterministic evaluation episodes, during training and at its end, on fresh
    environment instances apart from the training ones; compiled once (the agent state is
    an argument)."""

    def __init__(self, agent: Agent, loop: Any, run: RunConfig):
        from purerl.experiments.evaluate import evaluate, evaluate_host

        self.run, self.episodes = run, run.eval_episodes or 10
        act = jax.jit(lambda state, obs, key: agent.act(state, obs, key, deterministic=True)[0])
        if isinstance(loop, _DeviceLoop):
            env, params, n = loop.env, loop.env_params, self.episodes

            @jax.jit
            def episodes(state: Any, key: jax.Array) -> jax.Array:
                return evaluate(functools.partial(act, state), env, params, key, n)[0]

            self._episodes = lambda state, key, seed: np.asarray(episodes(state, key))
        else:

            def host(state: Any, key: jax.Array, seed: int) -> np.ndarray:
                policy = functools.partial(act, state)
                return evaluate_host(policy, run.env, key, self.episodes, seed)[0]

            self._episodes = host

    def __call__(self, states: Any, step: int | None = None) -> np.ndarray:
        """Each seed's mean return after `step` env steps (None: at the end, with the keys
        `load_policy`'s users replay, `eval_key(seed)`)."""
        means = []
        for i in range(self.run.num_seeds):  # One seed at a time, as load_policy replays it.
            state = jax.tree.map(lambda x, i=i: x[i], states)
            key = eval_key(self.run.seed + i)
            if step is not None:
                key = jax.random.fold_in(key, step)
            means.append(float(np.mean(self._episodes(state, key, self.run.seed + i))))
        return np.asarray(means)


def _check_finite(metrics: dict[str, np.ndarray], agent: str, interval: int, run_dir: Path) -> None:
    for name, value in metrics.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(
                f"{agent}: metric {name!r} became non-finite in logging interval {interval} "
                "(the loss diverged). Lower the learning rate or enable gradient clipping. "
                f"The metrics up to here are in {run_dir / 'metrics.csv'}."
            )


def _interval_row(metrics: dict[str, np.ndarray], steps: int, sps: float) -> dict[str, float]:
    count = metrics["count"].sum()
    row = {
        "step": steps,
        "steps_per_second": sps,
        "episode_return": float(metrics["return_sum"].sum() / count) if count else float("nan"),
        "episode_length": float(metrics["length_sum"].sum() / count) if count else float("nan"),
        "episodes": float(count),
    }
    for k, v in metrics.items():
        if k not in ("return_sum", "length_sum", "count"):
            row[k] = float(np.mean(v))
    return row


def _seed_returns(metrics: dict[str, np.ndarray]) -> np.ndarray:
    """Mean return of the episodes that ended in one interval, per seed (NaN if none)."""
    count = metrics["count"].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, metrics["return_sum"].sum(0) / np.maximum(count, 1), np.nan)


def _final_return(stacked: dict[str, np.ndarray]) -> np.ndarray:
    """Mean return of the episodes that ended in the last 10% of updates, per seed."""
    num_updates = stacked["count"].shape[0]
    tail = slice(num_updates - max(1, num_updates // 10), None)
    count = stacked["count"][tail].sum(0)
    total = stacked["return_sum"][tail].sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(repr(r.get(k, "")) for k in keys) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def cli_main(fn: Callable[[], Any]) -> None:
    """Runs a script's main, turning configuration errors into a one-line message."""
    try:
        fn()
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, TypeError, FloatingPointError) as e:
        if os.environ.get("PURERL_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except HostEnvError as e:  # The user's environment failed; its traceback is theirs.
        import traceback

        if e.__cause__ is not None:
            traceback.print_exception(e.__cause__.__cause__ or e.__cause__, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def resume_configs(args: Any, agent_name: str) -> tuple[RunConfig, Any]:
    """The run and agent configs `args.run.resume` was started with, set to resume it.
    Other flags given with --resume are named in a warning, since they are not used."""
    from purerl.experiments.policy import read_config

    run_dir = args.run.resume
    ignored = [
        f"--{f.name.replace('_', '-')}"
        for part in (args.run, args.agent)
        for f in dataclasses.fields(part)
        if f.name not in ("resume", "quiet") and getattr(part, f.name) != f.default
    ]
    if ignored:
        print(
            f"warning: --resume continues {run_dir} with the configs it was started with; "
            f"ignoring {', '.join(ignored)}",
            file=sys.stderr,
        )
    saved = read_config(Path(run_dir))
    if saved["agent"] != agent_name:
        raise ValueError(
            f"{run_dir} is a {saved['agent']} run; resume it with "
            f"python -m purerl.experiments.{saved['agent']} --resume {run_dir}"
        )
    run = RunConfig(
        **{**saved["run"], "resume": str(run_dir), "run_dir": str(run_dir), "quiet": args.run.quiet}
    )
    return run, saved["agent_config"]


def parse(cls: type, argv: list[str] | None = None) -> Any:
    """Parses a flat CLI (`--env`, `--num-envs`, `--learning-rate`, ...) into `cls`, an
    experiment dataclass with `run` and `agent` fields. `--config FILE.yaml` gives defaults
    by flag name (`num_envs: 16` or `num-envs: 16`); flags on the command line override it."""
    import tyro

    argv = list(sys.argv[1:] if argv is None else argv)
    default = None
    path = _config_path(argv)
    if path is not None:
        default = _from_yaml(cls, path)
    return tyro.cli(cls, args=argv, default=default, config=(tyro.conf.OmitArgPrefixes,))


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _from_yaml(cls: type, path: str) -> Any:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ValueError(f"Cannot read --config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--config {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must map flag names to values.")
    parts = {f.name: f.default for f in dataclasses.fields(cls)}  # run, agent
    fields = {name: {f.name for f in dataclasses.fields(part)} for name, part in parts.items()}
    chosen: dict[str, dict[str, Any]] = {name: {} for name in parts}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        owner = next((part for part, names in fields.items() if name in names), None)
        if owner is None:
            known = sorted(n for names in fields.values() for n in names)
            raise ValueError(f"--config {path}: unknown option {key!r}; options are {known}.")
        if isinstance(value, list):
            value = tuple(value)
        chosen[owner][name] = value
    return cls(**{name: dataclasses.replace(parts[name], **chosen[name]) for name in parts})
