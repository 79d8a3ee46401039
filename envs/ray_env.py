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
need purerl and the env's package installed. The envs' state is not checkpointed: a resumed
run resets the workers' envs, which start new episodes (not bit-identical, as async envs).
"""

from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

import gymnasium
import numpy as np
from gymnasium import spaces
from purerl.envs.checks import EnvCheckError
from purerl.envs.host import (
    HostVecEnv,
    _EnvFactory,
)

EXTRA_HINT = 'Ray is an optional extra: pip install -e ".[ray]" (or pip install "ray>=2.50").'


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


class EnvWorker:
    """One Ray actor's envs: a Gymnasium `SyncVectorEnv` of its slice, with same-step
    auto-reset, as `HostVecEnv`'s sync path builds it (wrapped by `ray.remote`)."""

    def __init__(self, env_fn: Callable[[], Any], name: str, num_envs: int, flatten: bool):
        try:  # A `module:Env-v0` name registers its id when imported; import it here too.
            from purerl.envs.registry import resolve

            resolve(name)
        except Exception:
            pass  # The factory below says what is wrong, if anything is.
        make = _EnvFactory(env_fn, name, flatten)
        same_step = gymnasium.vector.AutoresetMode.SAME_STEP
        self.vec = gymnasium.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=same_step)

    def node(self) -> str:
        """The IP address of the node this worker runs on."""
        import ray

        return ray.util.get_node_ip_address()

    def reset(self, seeds: list[int]) -> Any:
        return self.vec.reset(seed=seeds)[0]

    def step(self, action: np.ndarray) -> tuple[Any, ...]:
        """`HostVecEnv._step_envs` on this slice; `finals` keyed by the slice's indices,
        and the sixth entry (where whole games ended) None when the envs give none."""
        raw, reward, terminated, truncated, info = self.vec.step(action)
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
        return raw, reward, terminated, truncated, finals, over

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
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        num_envs: int,
        name: str,
        workers: int = 2,
        address: str | None = None,
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
        flatten = not isinstance(raw_obs, spaces.Box)
        actor = self._ray.remote(num_cpus=1)(EnvWorker)
        self.workers = [actor.remote(env_fn, name, b - a, flatten) for a, b in self.slices]
        try:
            self.nodes = self._ray.get([w.node.remote() for w in self.workers])
        except Exception:
            self.close()
            raise
        self.steps = 0
        self.episode_return = np.zeros(num_envs, np.float64)
        self.episode_length = np.zeros(num_envs, np.int64)
        self._zeros_f, self._zeros_i = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        self.obs: np.ndarray | None = None

    @property
    def where(self) -> str:
        """Where the envs run, for the startup line."""
        nodes = len(set(self.nodes))
        cluster = "local Ray" if self.address is None else f"Ray cluster at {self.address}"
        on = f" on {nodes} nodes" if nodes > 1 else ""
        return f"{self.num_envs} envs in {len(self.workers)} Ray workers{on} ({cluster})"

    def _reset_envs(self, seed: int) -> Any:
        ray = self._ray
        refs = [
            w.reset.remote([seed + i for i in range(a, b)])
            for w, (a, b) in zip(self.workers, self.slices, strict=True)
        ]
        return np.concatenate(ray.get(refs))

    def _step_envs(self, action: np.ndarray) -> tuple[Any, ...]:
        action = np.asarray(action)
        refs = [
            w.step.remote(action[a:b]) for w, (a, b) in zip(self.workers, self.slices, strict=True)
        ]
        try:
            parts = self._ray.get(refs)
        except Exception:
            self._raise_first_error(refs)
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

    def _raise_first_error(self, refs: list[Any]) -> NoReturn:
        """Raises the first failed worker's error, naming the worker; takes every worker's
        result first (Ray reports errors no one took as unhandled)."""
        errors = []
        for w, ((a, b), ref) in enumerate(zip(self.slices, refs, strict=True)):
            try:
                self._ray.get(ref)
            except Exception as e:
                errors.append((w, a, b, e))
        w, a, b, e = errors[0]
        cause = getattr(e, "cause", None) or e  # A `RayTaskError` holds the env's error.
        if isinstance(cause, EnvCheckError):
            raise cause from None
        node = self.nodes[w]
        raise RuntimeError(f"in Ray env worker {w} (envs {a} to {b - 1}, node {node}): {cause!r}")

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
