"""Adapter for gymnax environments: the protocol is already theirs; only spaces change."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import gymnasium
import jax
from purerl.envs.base import EnvParams, EnvState, StepResult
from purerl.envs.spaces import from_gymnax


class GymnaxEnv:
    """A gymnax 1.0 environment behind purerl's protocol, with Gymnasium spaces."""

    def __init__(self, env: Any, name: str | None = None):
        self.env = env
        self.name = name or type(env).__name__

    @property
    def default_params(self) -> EnvParams:
        return self.env.default_params

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[Any, EnvState]:
        return self.env.reset(key, params)

    def step(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> StepResult:
        return self.env.step(key, state, action, params)

    def observation_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        return from_gymnax(self.env.observation_space(params))

    def action_space(self, params: EnvParams) -> gymnasium.spaces.Space:
        return from_gymnax(self.env.action_space(params))

    def __repr__(self) -> str:
        return f"GymnaxEnv({self.name})"


# Built-in gymnax ids whose modules import nothing heavy. `import gymnax` itself imports
# every environment it ships (and with them seaborn, pandas and scipy: about a second);
# these ids are made without that, see `_lazy_package`.
_LIGHT_IDS: dict[str, tuple[str, str]] = {
    "CartPole-v1": ("classic_control.cartpole", "CartPole"),
    "Acrobot-v1": ("classic_control.acrobot", "Acrobot"),
    "Pendulum-v1": ("classic_control.pendulum", "Pendulum"),
    "MountainCar-v0": ("classic_control.mountain_car", "MountainCar"),
    "MountainCarContinuous-v0": (
        "classic_control.continuous_mountain_car",
        "ContinuousMountainCar",
    ),
    "Asterix-MinAtar": ("minatar.asterix", "MinAsterix"),
    "Breakout-MinAtar": ("minatar.breakout", "MinBreakout"),
    "Freeway-MinAtar": ("minatar.freeway", "MinFreeway"),
    "Seaquest-MinAtar": ("minatar.seaquest", "MinSeaquest"),
    "SpaceInvaders-MinAtar": ("minatar.space_invaders", "MinSpaceInvaders"),
}


def _lazy_package(name: str) -> None:
    """Registers package `name` without running its `__init__` until an attribute of it
    is first missing; then runs it in place, so `import gymnax; gymnax.make(...)` later
    behaves exactly as if it had been imported normally."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        importlib.import_module(name)
        return
    module = types.ModuleType(name)
    module.__spec__ = spec
    module.__file__ = spec.origin
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = name

    def __getattr__(attr: str) -> Any:  # noqa: N807 (PEP 562)
        if not attr.startswith("__") and importlib.util.find_spec(f"{name}.{attr}"):
            return importlib.import_module(f"{name}.{attr}")  # A submodule: no __init__.
        del module.__dict__["__getattr__"]
        with open(spec.origin) as f:
            exec(compile(f.read(), spec.origin, "exec"), module.__dict__)
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def make_gymnax(name: str, **kwargs: Any) -> tuple[GymnaxEnv, EnvParams] | None:
    """Makes a built-in gymnax environment by id; None if `name` is not one."""
    if name in _LIGHT_IDS and not kwargs:
        module_name, cls_name = _LIGHT_IDS[name]
        _lazy_package("gymnax")
        _lazy_package("gymnax.environments")
        env = getattr(importlib.import_module(f"gymnax.environments.{module_name}"), cls_name)()
        return GymnaxEnv(env, name=name), env.default_params
    import gymnax

    if name not in gymnax.registered_envs:
        return None
    try:
        env, params = gymnax.make(name, **kwargs)
    except OSError as e:  # urllib's URLError is an OSError.
        raise ValueError(
            f"gymnax's {name} downloads its data when first made, and that failed "
            f"({type(e).__name__}: {getattr(e, 'reason', e)}). Make it once on a machine "
            "online (its data is then cached), or choose another environment."
        ) from None
    return GymnaxEnv(env, name=name), params
