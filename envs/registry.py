"""`make(name)`: resolve an environment name to a purerl JAX environment and its params."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from purerl.envs.base import Environment, EnvParams
from purerl.envs.functional import FunctionalEnv
from purerl.envs.gymnax_env import GymnaxEnv, make_gymnax


def _gymnax_ids() -> list[str]:
    import gymnax

    return list(gymnax.registered_envs)


def _functional_ids() -> list[str]:
    import gymnasium

    ids = []
    for env_id, spec in gymnasium.registry.items():
        entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
        if env_id.startswith("phys2d/") or "functional_jax" in entry:
            ids.append(env_id)
    return sorted(ids)


def available() -> list[str]:
    """Every name `make` resolves without a `module:attr` path."""
    return sorted(_gymnax_ids()) + _functional_ids()


def _from_functional_id(name: str, **kwargs: Any) -> tuple[Environment, EnvParams]:
    import gymnasium

    spec = gymnasium.spec(name)
    entry = spec.entry_point
    cls = _load_attr(entry) if isinstance(entry, str) else entry
    # The registered entry points are `FunctionalJaxEnv`s wrapping a `FuncEnv`; build the
    # `FuncEnv` itself so it runs inside our jitted loop.
    func_env = _func_env_of(cls, name)
    max_steps = kwargs.pop("max_episode_steps", spec.max_episode_steps)
    if kwargs:
        func_env = type(func_env)(kwargs)
    env = FunctionalEnv(func_env, max_episode_steps=max_steps, name=name)
    return env, env.default_params


def _func_env_of(cls: Any, name: str) -> Any:
    from gymnasium.experimental.functional import FuncEnv

    module = importlib.import_module(cls.__module__)
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, FuncEnv) and value is not FuncEnv:
            if value.__module__ == module.__name__:
                return value()
    raise ValueError(f"{name}: found no FuncEnv class in {module.__name__}.")


def _load_attr(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"Cannot import module {module_name!r} for environment {path!r}: {e}"
        ) from e
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(
            f"Module {module_name!r} has no attribute {attr!r} (from {path!r})."
        ) from None
    return obj


def wrap(obj: Any, name: str) -> tuple[Environment, EnvParams]:
    """Puts a user's JAX environment (instance, class or factory) behind the protocol."""
    from gymnasium.experimental.functional import FuncEnv

    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "step")):
        obj = obj()
    if isinstance(obj, tuple) and len(obj) == 2 and hasattr(obj[0], "step"):
        obj, params = obj  # A factory returning (env, params), like gymnax.make.
    else:
        params = None
    if isinstance(obj, FuncEnv):
        env = FunctionalEnv(
            obj, max_episode_steps=getattr(obj, "max_episode_steps", None), name=name
        )
        return env, env.default_params
    try:
        import gymnax

        if isinstance(obj, gymnax.environments.environment.Environment):
            env = GymnaxEnv(obj, name=name)
            return env, params if params is not None else env.default_params
    except ImportError:
        pass
    if isinstance(obj, Environment):
        return obj, params if params is not None else obj.default_params
    raise TypeError(
        f"{name!r} gave {type(obj).__name__}, which is not a JAX environment: it needs "
        "default_params, reset(key, params), step(key, state, action, params), "
        "observation_space(params) and action_space(params) (purerl's protocol, gymnax 1.0's), "
        "or to be a gymnasium FuncEnv."
    )


def make(name: str, **kwargs: Any) -> tuple[Environment, EnvParams]:
    """Makes a JAX environment by name.

    Args:
      name: a gymnax id (`"CartPole-v1"`, `"Breakout-MinAtar"`, ...), a Gymnasium
        functional JAX id (`"phys2d/CartPole-v1"`), or `"module.path:Attr"` naming a
        user's environment class, instance or factory.
      **kwargs: passed to the environment's constructor.

    Returns:
      `(env, params)`: the single, unbatched, auto-resetting environment and its
      default params.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"An environment name must be a non-empty string; got {name!r}.")
    if ":" in name and not name.startswith("gymnasium:"):
        return (
            wrap(_load_attr(name), name) if not kwargs else wrap(_load_attr(name)(**kwargs), name)
        )
    if name.startswith("phys2d/") or "/" in name:
        if name in _functional_ids():
            return _from_functional_id(name, **kwargs)
    else:
        made = make_gymnax(name, **kwargs)
        if made is not None:
            return made
    names = available()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown environment {name!r}.{hint} Available JAX environments: {', '.join(names)}; "
        "or pass 'module.path:ClassOrFactory' for your own."
    )
