"""XLand-MiniGrid environments (`--env xminigrid:ID`: `MiniGrid-Empty-6x6`,
`XLand-MiniGrid-R1-9x9`, ...) behind purerl's protocol, on the device loop. XLand-MiniGrid
is an optional extra: `pip install -e ".[xminigrid]"`.

Its `step` does not reset; an episode ends at a `LAST` time step, as `terminated` where its
discount is 0 (the goal met) and as `truncated` at its `max_steps` limit. The observation is
the agent's view, an image `[V, V, 2]` of tile and colour ids, which the agent sees as float32
numbers (not as uint8 pixels it would scale to [0, 1]).

Params: the numeric fields of XLand-MiniGrid's own `EnvParams` (`--env-params max_steps=50`,
`view_size=5`, ...) and, for the XLand (meta-RL) ids, the task: XLand-MiniGrid takes it from
a ruleset of a benchmark, `--env-params benchmark=trivial-21k ruleset=0` (the benchmark's
name or the path of a benchmark file; the ruleset's index in it, 0 by default). Every
episode plays that one ruleset. Without a benchmark an XLand id has XLand-MiniGrid's
placeholder task: no goal, so the reward is always 0 and episodes end only at `max_steps`.
XLand-MiniGrid downloads a named benchmark once (from Hugging Face) into its cache,
`$XLAND_MINIGRID_DATA` or `~/.xland_minigrid`; where the machine cannot reach it, the error
says where to put the file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from purerl.envs.base import EnvParams
from purerl.envs.suites import (
    DiscreteSuiteEnv,
    box_like,
    import_suite,
    numeric_items,
    settings_params,
    unknown_id,
)

PREFIX = "xminigrid"
_LAST = 2  # XLand-MiniGrid's (dm_env's) last step type.
# The task settings of the XLand ids: no benchmark (the placeholder task), its first ruleset.
_TASK = {"benchmark": "", "ruleset": 0}


@functools.cache
def load_benchmark(benchmark: str) -> Any:
    """XLand-MiniGrid's benchmark `benchmark`: the path of a benchmark file (as
    `xminigrid.benchmarks.save_bz2_pickle` writes it), or the name of one it publishes, read
    from its cache (downloaded there the first time), or a clear error saying where the
    file goes when it cannot be downloaded."""
    from xminigrid import benchmarks

    if os.path.isfile(os.path.expanduser(benchmark)):
        return benchmarks.load_benchmark_from_path(os.path.expanduser(benchmark))
    names = benchmarks.registered_benchmarks()
    if benchmark not in names:
        raise ValueError(
            f"--env-params benchmark={benchmark}: no such file, and XLand-MiniGrid has no "
            f"benchmark of that name; its benchmarks are {', '.join(names)}."
        )
    try:
        return benchmarks.load_benchmark(benchmark)
    except OSError as e:  # No network (urllib's URLError), or a broken download.
        filename = benchmarks.NAME2HFFILENAME[benchmark]
        url = f"https://huggingface.co/datasets/{benchmarks.HF_REPO_ID}/resolve/main/{filename}"
        raise ValueError(
            f"XLand-MiniGrid's benchmark {benchmark!r} is not on this machine and could not "
            f"be downloaded ({e}). XLand-MiniGrid reads it from its cache, "
            f"{os.path.join(benchmarks.DATA_PATH, filename)} ($XLAND_MINIGRID_DATA sets the "
            f"folder), where it downloads it from {url} the first time. Put the file there, "
            f"or give its path: --env-params benchmark=/path/to/{filename}."
        ) from None


@functools.cache
def _ruleset(benchmark: str, ruleset: int) -> Any:
    """Ruleset number `ruleset` of `benchmark`, as NumPy arrays (constants under `jit`)."""
    from xminigrid.types import RuleSet

    loaded = load_benchmark(benchmark)
    count = loaded.num_rulesets()
    if not 0 <= ruleset < count:
        raise ValueError(
            f"--env-params ruleset={ruleset}: XLand-MiniGrid's benchmark {benchmark!r} has "
            f"{count} rulesets, 0 to {count - 1}."
        )
    parts = (loaded.goals, loaded.rules, loaded.init_tiles)
    return RuleSet(*(np.asarray(part[ruleset]) for part in parts))


class XMiniGridEnv(DiscreteSuiteEnv):
    """An XLand-MiniGrid environment as a single, auto-resetting purerl environment."""

    prefix = PREFIX

    def __init__(self, name: str, env: Any, env_params: Any, params: Any):
        self.name, self.env, self._env_params, self._default = name, env, env_params, params
        self.xland = hasattr(env_params, "ruleset")  # A meta-RL id, its task from a ruleset.

    @property
    def default_params(self) -> Any:
        return self._default

    def env_params(self, params: Any) -> Any:
        """XLand-MiniGrid's `EnvParams` that `params` (purerl's, all static) stand for."""
        settings = dict(numeric_items(params))
        benchmark, ruleset = (settings.pop(k, _TASK[k]) for k in _TASK)
        env_params = self._env_params.replace(**settings)
        if benchmark:
            return env_params.replace(ruleset=_ruleset(benchmark, ruleset))
        if ruleset != _TASK["ruleset"]:
            raise ValueError(
                f"--env-params ruleset={ruleset} picks a ruleset of a benchmark; give the "
                "benchmark too (benchmark=trivial-21k, or the path of a benchmark file)."
            )
        if self.xland:
            warnings.warn(
                f"{PREFIX}:{self.name} without a benchmark has XLand-MiniGrid's placeholder "
                "task: no goal, the reward always 0. Give it one: --env-params "
                "benchmark=trivial-21k ruleset=0.",
                stacklevel=2,
            )
        return env_params

    def num_actions(self, params: EnvParams) -> int:
        return int(self.env.num_actions(self.env_params(params)))

    def _reset(self, key: jax.Array, params: Any) -> tuple[Any, jax.Array]:
        timestep = self.env.reset(self.env_params(params), key)
        return timestep, timestep.observation.astype(jnp.float32)

    def _step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        timestep = self.env.step(self.env_params(params), state, action)
        last = timestep.step_type == _LAST
        terminated = last & (timestep.discount == 0)
        obs = timestep.observation.astype(jnp.float32)
        return timestep, obs, timestep.reward, terminated, last & ~terminated

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Box:
        return box_like(self.observation_example(params), 0, 255)


def make_xminigrid(name: str, **kwargs: Any) -> tuple[XMiniGridEnv, Any]:
    """XLand-MiniGrid's environment `name`; `kwargs` set its params (the numeric fields of
    XLand-MiniGrid's `EnvParams`, and for an XLand id `benchmark` and `ruleset`), which
    `--env-params` sets too."""
    xminigrid = import_suite("xminigrid", PREFIX, name, "xminigrid")
    known = list(xminigrid.registered_environments())
    if name not in known:
        raise unknown_id("XLand-MiniGrid", PREFIX, name, known)
    env, env_params = xminigrid.make(name)
    fields = (f.name for f in dataclasses.fields(env_params))
    defaults = {k: getattr(env_params, k) for k in fields}
    defaults = {k: v for k, v in defaults.items() if isinstance(v, int | float)}
    if hasattr(env_params, "ruleset"):  # An XLand id: its task comes from a benchmark.
        defaults.update(_TASK)
    params = settings_params(PREFIX, name, "XMiniGridParams", defaults, kwargs)
    return XMiniGridEnv(name, env, env_params, params), params
