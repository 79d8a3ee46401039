"""Run settings: the run config every experiment shares, and how a run's steps divide into
updates and logging intervals."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from pathlib import Path
from typing import Literal


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """How to run an experiment (the agent's own hyperparameters live in its config).

    Attributes:
      env: environment name. JAX environments run on the device loop: a gymnax id
        (CartPole-v1), a Gymnasium functional JAX id (phys2d/CartPole-v1), or
        module.path:ClassOrFactory for your own. Python ones run on the host loop:
        gymnasium:ID (gymnasium:CartPole-v1, gymnasium:my_pkg.envs:MyEnv-v0), or
        module.path:ClassOrFactory of a gymnasium.Env or dm_env.Environment.
      env_params: FIELD=VALUE settings of a JAX environment's params, e.g. `--env-params
        max_steps_in_episode=5000` (gymnax's time limit); a nested field by its dotted
        path (`env_params.gravity=9.0`). Training, evaluation, `enjoy` and `load_policy`
        all use them.
      total_timesteps: environment steps per seed (over all devices); rounded up to
        whole logging intervals.
      seed: the first seed; seed i of --num-seeds is seed + i.
      num_seeds: independent seeds trained together, vmapped in one program.
      num_devices: devices to run data-parallel on (default: all; on a CPU see
        `--spread-runs`). In a multi-host run, the devices over all processes, an equal
        share of each process's own.
      num_logs: logging intervals; the host sees the device once per interval.
      run_dir: where the summary and metrics go (default: runs/AGENT_ENV_TIME).
      quiet: print only the final summary line (no progress, no startup line).
      plot: draw RUN_DIR/learning_curve.png at the end (matplotlib: about 0.7 s; --no-plot
        skips it); `python -m purerl.experiments.plot RUN_DIR` draws it any time.
      eval_episodes: greedy/deterministic evaluation episodes per seed at the end, on
        fresh environment instances (0: none; its compile costs about a second).
      eval_epsilon: evaluation acts uniformly at random with this probability (discrete
        actions), as Atari agents are evaluated (0.001-0.05); 0, the default, is greedy. On
        an environment that is deterministic from its start (gymnax's
        SpaceInvaders-MinAtar), a greedy policy plays the same episode every time.
      checkpoint_every: save the whole training state every this many env steps (per
        seed), at the end of the logging interval that crosses it, and at the end;
        default a tenth of the run but at most once a minute; every run keeps its final
        state, so a finished run can be extended with --resume; 0: never (then it cannot
        be). Ctrl-C also saves one, then stops.
      keep_checkpoints: how many of the newest checkpoints to keep.
      resume: a run directory to continue from its newest checkpoint, with the configs it
        was started with (the other flags are not used).
      config: a YAML file of option values by flag name; flags given on the command line
        override it. The resolved configs are saved in RUN_DIR/config.json.
      init_from: a run directory whose trained agent (its saved policy, or its newest
        checkpoint) starts this new run: each part of the agent state (parameters, target
        parameters, optimizer state, counters) that fits this run's config is copied, the
        rest starts fresh; both are listed. Seeds map one to one, or one to all.
      rebuild_envs: host loop, with --resume: make the Python envs afresh from --env's
        name instead of restoring them as pickled at the checkpoint (so a change to the
        env's constructor applies; the resumed run is then not bit-identical).
      host_envs: host loop only: step the Python envs in this process ("sync") or one
        subprocess each ("async", for slow envs; not bit-identical on resume), or in
        --env-workers Ray actors ("ray", needs the `ray` extra; on a Ray cluster with
        --ray-address; the same run as "sync", but not bit-identical on resume).
      env_workers: --host-envs ray: how many Ray actors step the envs, each holding a
        fixed slice of the --num-envs envs.
      ray_address: --host-envs ray: the Ray cluster to run the env workers on ("auto", or
        the head's HOST:PORT, as `ray start --head` prints). Default: start a local Ray in
        this process and stop it at the end.
      actors_on_workers: --host-envs ray: each env worker also runs the agent's `act` on
        its slice of envs and sends back whole rollouts, so only rollouts and parameters
        cross the network (IMPALA's split); the learner process no longer acts. Each
        worker's slice acts with a key of its own, so with two or more workers the run
        differs from the actor thread's (one worker gives the same run). Not with
        --normalize-rewards (its statistics live in the learner process).
      max_staleness: host loop only: how many learner updates the acting parameters may
        lag; 0 alternates actor and learner, 1 overlaps them. Default: from the agent's
        data path, 0 on-policy (PPO: its clipped ratio learns worse from stale rollouts),
        1 for replay (DQN).
      eval_every: also evaluate every this many env steps (at the end of the logging
        interval that crosses it), with --eval-episodes episodes (10 if that is 0); logged
        apart from training returns, to RUN_DIR/eval.csv and TensorBoard's eval/. 0: never.
      compile_cache: keep JAX's compiled programs in a persistent cache, so a second run
        of the same configuration skips most of its compiling.
      compile_cache_dir: where (default: $XDG_CACHE_HOME/purerl/jax, else
        ~/.cache/purerl/jax).
      sweep: hyperparameters to sweep in the same compiled program, each NAME=V1,V2,...
        (`--sweep learning_rate=1e-4,3e-4 gamma=0.95,0.99`; in YAML, `sweep: {learning_rate:
        [1e-4, 3e-4]}`): the grid of all given values, each with --num-seeds seeds, vmapped
        together on the device loop. Any float option of the agent can be swept. The run
        directory gets sweep.csv (one row per configuration and seed) and the summary ranks
        the configurations.
      spread_runs: device loop with several devices: put the independent runs (seeds,
        sweep configurations) on the devices, each device training its own runs whole, with
        no collectives between them, instead of training every run data-parallel on all
        the devices. The runs must divide evenly. On a CPU the command line does this by
        default: it makes one device per core and spreads several runs over as many as
        divide them (a single run, or the host loop, stays on one; --num-devices 1 keeps
        every run on one; a count set in XLA_FLAGS keeps today's data-parallel default).
      clip_rewards: the agent learns from rewards clipped to their sign; episode returns
        are logged unclipped. Default: on for Atari (gymnasium:ALE/..., envpool:Breakout-v5
        and EnvPool's other Atari ids), off otherwise.
      normalize_rewards: scale the rewards the agent learns from by the running standard
        deviation of each env's discounted return (the agent's gamma), clipped to +-10;
        episode returns are still logged unscaled. The statistics are saved in checkpoints.
      coordinator: multi-host training: HOST:PORT of process 0, which coordinates the
        others (jax.distributed). Run the same command on every process with the same
        --coordinator and --num-processes and each its own --process-id; one mesh spans all
        their devices and the learner is data-parallel over all of them. Only process 0
        writes the run directory, which must be on storage every process sees (its
        checkpoints are written by all). Default: $JAX_COORDINATOR_ADDRESS, if set.
      num_processes: processes in a multi-host run (default: $JAX_NUM_PROCESSES).
      process_id: this process's index, 0 to --num-processes - 1 (default:
        $JAX_PROCESS_ID).
      coordinator_timeout: seconds a process waits for the coordinator, and the
        coordinator for the others, before stopping with an error.
      tensorboard: write TensorBoard event files to RUN_DIR/tensorboard.
      wandb_project: also log to this Weights & Biases project (needs `pip install wandb`).
    """

    env: str = "CartPole-v1"
    env_params: tuple[str, ...] = ()
    total_timesteps: int = 500_000
    seed: int = 0
    num_seeds: int = 1
    num_devices: int | None = None
    num_logs: int = 20
    run_dir: str | None = None
    quiet: bool = False
    plot: bool = True
    eval_episodes: int = 0
    eval_epsilon: float = 0.0
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    resume: str | None = None
    config: str | None = None
    init_from: str | None = None
    rebuild_envs: bool = False
    host_envs: Literal["sync", "async", "ray"] = "sync"
    env_workers: int = 2
    ray_address: str | None = None
    actors_on_workers: bool = False
    max_staleness: int | None = None
    eval_every: int = 0
    compile_cache: bool = True
    compile_cache_dir: str | None = None
    sweep: tuple[str, ...] = ()
    spread_runs: bool = False
    clip_rewards: bool | None = None
    normalize_rewards: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    coordinator_timeout: float = 120.0
    tensorboard: bool = True
    wandb_project: str | None = None

    def __post_init__(self) -> None:
        # A tuple however given (config.json holds a list); refused now if unreadable.
        object.__setattr__(self, "env_params", tuple(self.env_params))
        if self.env_params:  # (Imported only then: the envs import JAX.)
            from purerl.envs.registry import check_env_params

            check_env_params(self.env_params)
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every must be 0 or more; got {self.checkpoint_every}.")
        if self.keep_checkpoints < 1:
            raise ValueError(f"--keep-checkpoints must be positive; got {self.keep_checkpoints}.")
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be 0 or more; got {self.eval_every}.")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise ValueError(f"--max-staleness must be 0 or more; got {self.max_staleness}.")
        if self.actors_on_workers and self.host_envs != "ray":
            raise ValueError(
                "--actors-on-workers runs the agent's act in the Ray env workers: it needs "
                f"--host-envs ray (got --host-envs {self.host_envs})."
            )
        if self.actors_on_workers and self.normalize_rewards:
            raise ValueError(
                "--actors-on-workers does not support --normalize-rewards (its running "
                "statistics are kept where the actor thread acts): drop one of them."
            )
        if self.coordinator_timeout <= 0:
            raise ValueError(
                f"--coordinator-timeout must be positive; got {self.coordinator_timeout}."
            )
        if self.eval_episodes < 0:
            raise ValueError(f"--eval-episodes must be 0 or more; got {self.eval_episodes}.")
        if not 0.0 <= self.eval_epsilon <= 1.0:
            raise ValueError(f"--eval-epsilon must be in [0, 1]; got {self.eval_epsilon}.")
        if self.eval_epsilon and not (self.eval_episodes or self.eval_every):
            raise ValueError(
                f"--eval-epsilon {self.eval_epsilon} applies to evaluation episodes, and this "
                "run has none: add --eval-episodes N (at the end) or --eval-every N."
            )
        for name in ("total_timesteps", "num_seeds", "num_logs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a positive integer; "
                    f"got {getattr(self, name)}."
                )


_CORE_DEVICES: list[int] = []  # Set by the CLI (`use_cpu_cores`): CPU devices it made.


def use_cpu_cores() -> None:
    """The command line's default on a CPU: one JAX device per core, so that independent
    runs (seeds, sweep configurations) spread over the cores (see `layout`). Not done where
    the user set a device count (XLA_FLAGS' --xla_force_host_platform_device_count or
    JAX_NUM_CPU_DEVICES), in a multi-host run, or once JAX has started its devices."""
    from purerl.experiments.engine import distributed

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if os.environ.get("JAX_NUM_CPU_DEVICES") or os.environ.get(distributed.ADDRESS_VAR):
        return
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized() or jax.config.jax_num_cpu_devices >= 0:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) > 1:
        jax.config.update("jax_num_cpu_devices", int(cores))
        _CORE_DEVICES[:] = [int(cores)]


def layout(run: RunConfig, host: bool) -> RunConfig:
    """`run` with the devices it trains on chosen, where the command line made one CPU
    device per core and `--num-devices` was not given: the host loop and a single run use
    one device (a data-parallel learner over CPU devices that share the cores runs slower
    than one), several runs spread over as many devices as divide them evenly."""
    if not _CORE_DEVICES or run.num_devices is not None:
        return run
    import jax

    if jax.default_backend() != "cpu":  # An accelerator: its devices, as asked.
        return run
    runs = len(run_seeds(run))
    devices = 1 if host else len(jax.local_devices())
    count = max(k for k in range(1, devices + 1) if runs % k == 0)
    return dataclasses.replace(run, num_devices=count, spread_runs=run.spread_runs or count > 1)


def sweep_size(run: RunConfig) -> int:
    """Configurations in `run`'s sweep grid (1 without a sweep)."""
    return math.prod(len(str(entry).partition("=")[2].split(",")) for entry in run.sweep)


def run_seeds(run: RunConfig) -> list[int]:
    """The seed of each run vmapped in one program: `--num-seeds` seeds from `--seed`, once
    per sweep configuration (configuration-major)."""
    return [run.seed + i for _ in range(sweep_size(run)) for i in range(run.num_seeds)]


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


def compile_cache_dir(run: RunConfig) -> Path | None:
    """The persistent compilation cache `run` uses (None: off)."""
    if not run.compile_cache:
        return None
    if run.compile_cache_dir:
        return Path(run.compile_cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "purerl" / "jax"


def enable_compile_cache(run: RunConfig) -> Path | None:
    """Turns on JAX's persistent compilation cache in `compile_cache_dir(run)` (for every
    program that takes at least 0.2 s to compile); returns the directory."""
    path = compile_cache_dir(run)
    if path is None:
        return None
    import jax

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # A read-only home must not stop a run: it only compiles anew.
        import sys

        print(
            f"warning: no compile cache ({e}); --compile-cache-dir DIR sets one.", file=sys.stderr
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def default_run_dir(agent: str, env: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{agent}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', env)}_{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path
