"""Host environments stepped in Ray actors (`--host-envs ray`), an optional extra:
`pip install -e ".[ray]"`.

`RayVecEnv` is a `HostVecEnv` whose envs live in `workers` Ray actors ("env workers", as
RLlib's `EnvRunner`s), anywhere in a Ray cluster: worker `w` holds a fixed, contiguous
slice of the envs, made in the worker from the env's factory. Each vector step sends every
worker its slice of the actions, waits for all of them (one `ray.get`) and concatenates
their results in worker order, so the loop sees what the sync path gives it: env `i` is
seeded `seed + i` whichever worker holds it, and the same seeds and actions give the same
run as `--host-envs sync`.

Without an address a local Ray starts in this process and stops when the env closes; with
one (`auto`, or `HOST:PORT` of a cluster's head) the envs join that cluster, whose nodes
need purerl and the env's package installed. Ray spreads the workers over the cluster's
nodes. The envs' state is not checkpointed: a resumed run resets the workers' envs, which
start new episodes (not bit-identical, as async envs).

A worker that dies (its process killed, its node lost) is made afresh, its envs made anew
from their factory, and every env is reset (new episodes); the step raises `EnvsRestarted`,
so the host loop drops the rollout in flight and collects it again. An env that raises stops
the run, as in the sync path.
"""

from __future__ import annotations

import logging
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

import gymnasium
import numpy as np
from gymnasium import spaces
from purerl.envs.checks import EnvCheckError
from purerl.envs.host import (
    EnvsRestarted,
    HostVecEnv,
    _EnvFactory,
)

EXTRA_HINT = 'Ray is an optional extra: pip install -e ".[ray]" (or pip install "ray>=2.50").'
RESET_TRIES = 3  # Resets tried while workers keep dying in them.
START_SECONDS = 120.0  # How long a worker may take to start (placed, its envs made).
NO_ROOM = (
    "each asks Ray for one CPU: has the cluster that many free? `ray status` shows its nodes "
    "and free CPUs; add nodes, or run fewer --env-workers"
)


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ValueError(
            f"--host-envs ray needs Ray, which is not installed ({e}). {EXTRA_HINT}"
        ) from None
    return ray


def slices(num_envs: int, workers: int) -> list[tuple[int, int]]:
    """The `[start, stop)` env indices each worker holds: contiguous, sizes differing by at
    most one, the larger first."""
    bounds = np.cumsum([0] + [len(s) for s in np.array_split(np.arange(num_envs), workers)])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def import_env(name: str) -> None:
    """Imports what a worker's envs need: a `module:Env-v0` name registers its id when its
    module is imported, in the worker's process too."""
    try:
        from purerl.envs.registry import resolve

        resolve(name)
    except Exception:
        pass  # The env's factory says what is wrong, if anything is.


class EnvWorker:
    """One Ray actor's envs: a Gymnasium `SyncVectorEnv` of its slice, with same-step
    auto-reset, as `HostVecEnv`'s sync path builds it (wrapped by `ray.remote`)."""

    def __init__(self, env_fn: Callable[[], Any], name: str, num_envs: int, flatten: bool):
        import_env(name)
        make = _EnvFactory(env_fn, name, flatten)
        same_step = gymnasium.vector.AutoresetMode.SAME_STEP
        self.vec = gymnasium.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=same_step)

    def node(self) -> tuple[str, str, str]:
        """The Ray node this worker runs on: its id, IP address and host name."""
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        return node_id, ray.util.get_node_ip_address(), socket.gethostname()

    def reset(self, seeds: list[int]) -> Any:
        return self.vec.reset(seed=seeds)[0]

    def step(self, action: np.ndarray) -> tuple[Any, ...]:
        """`HostVecEnv._step_envs` on this slice; `finals` keyed by the slice's indices,
        the sixth entry (where whole games ended) None when the envs give none, and the
        seventh the seconds the envs took (the worker's busy time, for the metrics)."""
        start = time.perf_counter()
        raw, reward, terminated, truncated, info = self.vec.step(action)
        seconds = time.perf_counter() - start
        finals = {}
        if "_final_obs" in info:
            finals = {int(i): info["final_obs"][i] for i in np.flatnonzero(info["_final_obs"])}
        ended = info.get("final_info", {})
        over = None
        if "game_over" in ended:
            lost_life = np.asarray(ended["_game_over"], bool) & ~np.asarray(
                ended["game_over"], bool
            )
            over = (terminated | truncated) & ~lost_life
        return raw, reward, terminated, truncated, finals, over, seconds

    def close(self) -> None:
        self.vec.close()


def connect(address: str | None, num_cpus: int) -> bool:
    """Joins the Ray cluster at `address` (`auto` or `HOST:PORT`), or starts a local Ray
    with `num_cpus` CPUs when it is None; returns whether this call started Ray (and so
    should shut it down). A process already connected to Ray keeps its connection."""
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "include_dashboard": False}
    if address is None:
        with warnings.catch_warnings():
            # JAX warns of any fork; Ray's is a fork-exec of its own processes (safe).
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            # "local": a new Ray of its own, even where one started by `ray start` runs.
            ray.init(address="local", num_cpus=num_cpus, **quiet)
        return True
    hint = (
        f"Cannot reach a Ray cluster at --ray-address {address}: is a Ray cluster running "
        "there? `ray status` (on a machine of the cluster) shows it; `ray start --head` "
        "starts one, and the address is the head's HOST:PORT (6379 by default). A cluster "
        "with token authentication (`ray start`'s default) also needs RAY_AUTH_MODE=token "
        "here and its token (~/.ray/auth_token, or RAY_AUTH_TOKEN)"
    )
    host, _, port = address.rpartition(":")
    if address != "auto" and host and port.isdigit():
        # Ray waits a minute for a cluster that is not there; a closed port says so at once.
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as e:
            raise ValueError(f"{hint} ({e}).") from None
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as e:
        raise ValueError(f"{hint} ({e}).") from None
    return True


class RayVecEnv(HostVecEnv):
    """`num_envs` host environments in `workers` Ray actors, with `HostVecEnv`'s interface
    and outputs (same-step auto-reset, flattened observations, episode statistics).

    Args:
      env_fn: makes one environment (picklable: it travels to the workers).
      num_envs: how many to run, split into `workers` fixed slices.
      name: the environment's name, for messages.
      workers: how many Ray actors hold the envs (each asks Ray for one CPU).
      address: a Ray cluster to join (`auto`, or the head's `HOST:PORT`); None starts a
        local Ray in this process, stopped by `close`.
      worker: the class each Ray actor is, made with `(env_fn, name, num_envs, flatten,
        *worker_args)`: `EnvWorker`, or one that also acts (the host loop's
        `--actors-on-workers`), called through `call`.
      worker_args: what else `worker` is made with.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        num_envs: int,
        name: str,
        workers: int = 2,
        address: str | None = None,
        worker: type = EnvWorker,
        worker_args: tuple[Any, ...] = (),
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive; got {num_envs}.")
        if not 1 <= workers <= num_envs:
            raise ValueError(
                f"--env-workers must be between 1 and --num-envs ({num_envs}), so that each "
                f"worker holds at least one env; got {workers}."
            )
        self.name, self.num_envs, self.mode = name, num_envs, "ray"
        raw_obs = self._read_spaces(env_fn)
        self.address = address
        self.slices = slices(num_envs, workers)
        self._ray = _ray()
        self._owns_ray = connect(address, num_cpus=workers)
        self._args = (env_fn, name, not isinstance(raw_obs, spaces.Box), *worker_args)
        # SPREAD: over the cluster's nodes, rather than packed onto the first with room.
        self._actor = self._ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(worker)
        self.workers = [self._new_worker(w) for w in range(workers)]
        try:
            refs = [w.node.remote() for w in self.workers]
            self.nodes = self._ray.get(refs, timeout=START_SECONDS)
        except self._ray.exceptions.GetTimeoutError:
            for w in self.workers:  # Not closed in turn: some never started.
                self._ray.kill(w)
            self.workers = []
            self.close()
            raise ValueError(
                f"The {workers} Ray env workers did not all start within {START_SECONDS:.0f} "
                f"s: {NO_ROOM}."
            ) from None
        except Exception:
            self.close()
            raise
        self.restarts = 0  # Workers made afresh after they died, over the run.
        self.busy = np.zeros(workers)  # Seconds each worker stepped its envs, since read.
        self._seed = 0
        self.steps = 0
        self.episode_return = np.zeros(num_envs, np.float64)
        self.episode_length = np.zeros(num_envs, np.int64)
        self._zeros_f, self._zeros_i = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        self.obs: np.ndarray | None = None

    def _new_worker(self, w: int) -> Any:
        a, b = self.slices[w]
        env_fn, name, flatten, *more = self._args
        return self._actor.remote(env_fn, name, b - a, flatten, *more)

    @property
    def where(self) -> str:
        """Where the envs run, for the startup line: the workers by node."""
        if self.address is not None:
            cluster = f"Ray cluster at {self.address}"
        elif self._owns_ray:
            cluster = "local Ray"
        else:  # This process had joined a Ray before.
            cluster = f"Ray at {self._ray.get_runtime_context().gcs_address}"
        return (
            f"{self.num_envs} envs in {len(self.workers)} Ray workers ({cluster}; "
            f"{placement(self.nodes)})"
        )

    def worker_seconds(self) -> np.ndarray:
        """Seconds each worker spent stepping its envs since the last call."""
        busy, self.busy = self.busy, np.zeros_like(self.busy)
        return busy

    def _reset_envs(self, seed: int) -> Any:
        self._seed = seed
        for _ in range(RESET_TRIES - 1):
            try:
                return self._reset_workers(seed)
            except EnvsRestarted:
                continue  # Reset the new workers too.
        return self._reset_workers(seed)

    def _reset_workers(self, seed: int) -> np.ndarray:
        refs = [
            w.reset.remote([seed + i for i in range(a, b)])
            for w, (a, b) in zip(self.workers, self.slices, strict=True)
        ]
        return np.concatenate(self._results(refs))

    def call(self, method: str, args: list[tuple[Any, ...]]) -> list[Any]:
        """Every worker's `method(*args[w])`, in worker order. Where workers died, makes
        them afresh, resets every env (new episodes, seeded apart from the run's first ones,
        so the loop goes on from a consistent batch) and raises `EnvsRestarted`."""
        refs = [getattr(w, method).remote(*a) for w, a in zip(self.workers, args, strict=True)]
        try:
            return self._results(refs)
        except EnvsRestarted:
            self.reset(self._seed + self.num_envs * self.restarts)
            raise

    def _step_envs(self, action: np.ndarray) -> tuple[Any, ...]:
        action = np.asarray(action)
        parts = self.call("step", [(action[a:b],) for a, b in self.slices])
        self.busy += [p[6] for p in parts]
        raw, reward, terminated, truncated = (
            np.concatenate([p[k] for p in parts]) for k in range(4)
        )
        finals = {}  # By env index, over all workers.
        for (a, _), part in zip(self.slices, parts, strict=True):
            finals.update({a + i: final for i, final in part[4].items()})
        if all(p[5] is None for p in parts):
            return raw, reward, terminated, truncated, finals
        over = np.concatenate(
            [p[2] | p[3] if p[5] is None else p[5] for p in parts]  # No game ended there.
        )
        return raw, reward, terminated, truncated, finals, over

    def _results(self, refs: list[Any]) -> list[Any]:
        """Every worker's result, in worker order. Where workers died, makes them afresh
        and raises `EnvsRestarted`; where an env raised, raises its error."""
        try:
            return self._ray.get(refs)
        except Exception:
            pass
        # Take every worker's result (Ray reports errors no one took as unhandled).
        died, failed = [], []
        for w, ref in enumerate(refs):
            try:
                self._ray.get(ref)
            except self._ray.exceptions.RayActorError as e:
                died.append((w, e))
            except Exception as e:
                failed.append((w, e))
        if failed:
            self._raise_env_error(*failed[0])
        for w, _ in died:
            try:
                self._ray.kill(self.workers[w])
            except Exception:
                pass  # Gone already.
            self.workers[w] = self._new_worker(w)
        for w, _ in died:  # Where the new workers run (which also waits for them to start).
            self.nodes[w] = self._started(w)
        self.restarts += len(died)
        which = "; ".join(
            f"Ray env worker {w} (envs {self.slices[w][0]} to {self.slices[w][1] - 1}) died "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}), made afresh on "
            f"{node_label(self.nodes[w], self.nodes)}"
            for w, e in died
        )
        raise EnvsRestarted(
            f"{which}; every env was reset (new episodes); {self.restarts} worker restart(s) "
            "in this run"
        )

    def _started(self, w: int) -> tuple[str, str, str]:
        """The node of worker `w`, made afresh, once it has started; a clear error where
        it cannot start in `START_SECONDS` (no node with a free CPU, as after a lost node)."""
        try:
            return self._ray.get(self.workers[w].node.remote(), timeout=START_SECONDS)
        except self._ray.exceptions.GetTimeoutError:
            self._ray.kill(self.workers[w])  # Not left waiting for room.
            raise RuntimeError(
                f"Ray env worker {w} died and the worker made in its place did not start "
                f"within {START_SECONDS:.0f} s: {NO_ROOM}"
            ) from None

    def _raise_env_error(self, w: int, e: Exception) -> NoReturn:
        """Raises the error of worker `w`'s envs, naming the worker, its envs and its node,
        with Ray's error (the env's remote traceback) as its cause."""
        a, b = self.slices[w]
        cause = getattr(e, "cause", None) or e  # A `RayTaskError` holds the env's error.
        if isinstance(cause, EnvCheckError):
            raise cause from None
        where = node_label(self.nodes[w], self.nodes)
        raise RuntimeError(
            f"in Ray env worker {w} (envs {a} to {b - 1}, on {where}): {cause!r}"
        ) from e

    def get_state(self) -> bytes | None:
        """None: the workers' envs are not checkpointed (a resumed run starts new episodes
        in them, as with async envs)."""
        return None

    def set_state(self, state: bytes) -> None:
        raise ValueError("Ray env workers' state is not saved in checkpoints.")

    def close(self) -> None:
        ray = self._ray
        try:
            if ray.is_initialized():
                ray.get([w.close.remote() for w in self.workers], timeout=30)
        except Exception:
            pass  # The workers go with their actors anyway.
        for w in self.workers:
            try:
                ray.kill(w)
            except Exception:
                pass
        self.workers = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False


def node_label(node: tuple[str, str, str], nodes: list[tuple[str, str, str]]) -> str:
    """A node as `host (IP)`, with the start of its Ray node id where another node of
    `nodes` has the same host and IP (several Ray nodes on one machine)."""
    node_id, ip, host = node
    label = f"{host} ({ip})"
    if any(other[1:] == node[1:] and other[0] != node_id for other in nodes):
        label = f"{host} ({ip}, node {node_id[:8]})"
    return label


def placement(nodes: list[tuple[str, str, str]]) -> str:
    """Which workers run on which node: `workers 0-3 on a (10.0.0.1), 4-7 on b (...)`."""
    by_node: dict[str, list[int]] = {}
    for w, node in enumerate(nodes):
        by_node.setdefault(node_label(node, nodes), []).append(w)
    groups = [f"{_ranges(ws)} on {label}" for label, ws in by_node.items()]
    word = "worker" if len(nodes) == 1 else "workers"
    return f"{word} {', '.join(groups)}"


def _ranges(numbers: list[int]) -> str:
    """`[0, 1, 2, 5]` -> `0-2, 5`."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
