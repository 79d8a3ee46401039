"""`make(name)`: resolve an environment name to a purerl JAX environment and its params."""

from __future__ import annotations

import difflib
import functools
import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from purerl.core import EnvSpec
from purerl.envs.base import Environment, EnvParams
from purerl.envs.checks import check_jax_env
from purerl.envs.functional import FunctionalEnv
from purerl.envs.gymnax_env import GymnaxEnv, make_gymnax

# `--env PREFIX:ID` of a JAX environment suite: the factory `(ID, **kwargs) -> (env, params)`.
SUITES = {
    "jumanji": "purerl.envs.jumanji_env:make_jumanji",
    "navix": "purerl.envs.navix_env:make_navix",
    "xminigrid": "purerl.envs.xminigrid_env:make_xminigrid",
    "pgx": "purerl.envs.pgx_env:make_pgx",
    "craftax": "purerl.envs.craftax_env:make_craftax",
    "playground": "purerl.envs.playground_env:make_playground",
}


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
    loop, made = resolve(name, **kwargs)
    if loop == "host":
        raise ValueError(
            f"{name!r} is a host (Python) environment, not a JAX one: it runs on the host loop "
            "(purerl.envs.make_host, or any experiment script's --env)."
        )
    return made


def resolve(name: str, **kwargs: Any) -> tuple[str, Any]:
    """Finds what `name` is and so which loop runs it.

    Returns:
      `("device", (env, params))` for a JAX environment (gymnax id, Gymnasium functional
      JAX id, `brax:NAME`, a suite's `PREFIX:ID` (`SUITES`: `jumanji:Snake-v1`, ...), or a
      user's JAX env from `module:Attr`), or `("host", env_fn)`
      for a Python one: `gymnasium:ID` (also `gymnasium:my_pkg.envs:MyEnv-v0`, which
      imports `my_pkg.envs` first, as `gymnasium.make` does), a Gymnasium id no JAX
      environment has, or a
      `module:Attr` naming a `gymnasium.Env` or `dm_env.Environment` class or factory.
      `env_fn()` makes one new environment.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"An environment name must be a non-empty string; got {name!r}.")
    if name.startswith("gymnasium:"):
        return "host", _gymnasium_fn(name.removeprefix("gymnasium:"), kwargs)
    if name.startswith("envpool:"):
        from purerl.envs.envpool_env import EnvPoolFactory

        return "host", EnvPoolFactory(name.removeprefix("envpool:"), **kwargs)
    if name.startswith("brax:"):
        from purerl.envs.brax_env import make_brax

        return "device", make_brax(name.removeprefix("brax:"), **kwargs)
    prefix, _, suite_id = name.partition(":")
    if prefix in SUITES:
        return "device", _load_attr(SUITES[prefix])(suite_id, **kwargs)
    if ":" in name:
        obj = _load_attr(name)
        host = _host_fn(obj, name, kwargs)
        if host is not None:
            return "host", host
        made = wrap(obj, name) if not kwargs else wrap(obj(**kwargs), name)
        check_jax_env(*made, name)  # A user's env: its shapes, before a loop traces it.
        return "device", made
    if name.startswith("phys2d/") or "/" in name:
        if name in _functional_ids():
            return "device", _from_functional_id(name, **kwargs)
    else:
        made = make_gymnax(name, **kwargs)
        if made is not None:
            return "device", made
    import gymnasium

    if name in gymnasium.registry:
        warnings.warn(
            f"{name!r} is not a JAX environment: running Gymnasium's {name} on the host "
            f"loop. Name it gymnasium:{name} to say so (and silence this).",
            stacklevel=2,
        )
        return "host", _gymnasium_fn(name, kwargs)
    names = available()
    # Each candidate once, as it must be written: Gymnasium ids with their prefix.
    candidates = dict.fromkeys(names + [f"gymnasium:{n}" for n in gymnasium.registry])
    by_id = {c.removeprefix("gymnasium:"): c for c in reversed(list(candidates))}
    close = difflib.get_close_matches(name, list(by_id), n=3)
    hint = f" Did you mean {', '.join(by_id[c] for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown environment {name!r}.{hint} Available JAX environments: {', '.join(names)}; "
        "any Gymnasium id as gymnasium:ID (e.g. gymnasium:CartPole-v1, run on the host loop); "
        "or 'module.path:ClassOrFactory' for your own."
    )


def with_params(resolved: tuple[str, Any], settings: Sequence[str], name: str) -> tuple[str, Any]:
    """`resolve(name)`'s answer with a JAX environment's params set by `settings`, each
    `"FIELD=VALUE"`: a field of its params dataclass (gymnax's `EnvParams`, e.g.
    `max_steps_in_episode=5000`), or of one nested in it (`env_params.gravity=9.0`). Each
    value is read as YAML (`5000`, `0.5`, `true`) and kept to the field's type."""
    if not settings:
        return resolved
    check_env_params(settings)
    loop, made = resolved
    if loop == "host":
        raise ValueError(
            f"--env-params sets the params of a JAX environment; {name} is a host (Python) "
            "environment, whose settings are its constructor's: give it a factory, "
            "--env module.path:make_my_env, that builds it with them."
        )
    import yaml

    env, params = made
    for setting in settings:
        path, text = split_env_param(setting)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--env-params {setting!r}: cannot read {text!r} ({e}).") from None
        params = _set_field(params, path.split("."), value, setting, name)
    if ":" in name and name.partition(":")[0] not in ("brax", *SUITES):
        check_jax_env(env, params, name)  # A user's env, checked with these params.
    return loop, (env, params)


def split_env_param(setting: str) -> tuple[str, str]:
    """`"FIELD=VALUE"` as `(FIELD, VALUE)`, or a clear error."""
    path, sep, text = setting.partition("=")
    if not sep or not path.strip():
        raise ValueError(f"--env-params takes FIELD=VALUE settings; got {setting!r}.")
    return path.strip(), text


def check_env_params(settings: Sequence[str]) -> None:
    """Clear errors for settings `with_params` cannot read whatever the environment: one
    not FIELD=VALUE, or a field given twice (the second would silently win)."""
    fields = [split_env_param(setting)[0] for setting in settings]
    twice = sorted({f for f in fields if fields.count(f) > 1})
    if twice:
        raise ValueError(f"--env-params sets {', '.join(twice)} more than once; give each once.")


def _set_field(params: Any, path: list[str], value: Any, setting: str, name: str) -> Any:
    """`params` (a dataclass) with the field at `path` set to `value`."""
    import dataclasses

    fields = (
        [f.name for f in dataclasses.fields(params)] if dataclasses.is_dataclass(params) else []
    )
    if path[0] not in fields:
        known = f"its fields are {', '.join(fields)}" if fields else "it has no fields"
        raise ValueError(
            f"--env-params {setting!r}: {name}'s params ({type(params).__name__}) have no "
            f"field {path[0]!r}; {known}."
        )
    current = getattr(params, path[0])
    if len(path) > 1:
        new = _set_field(current, path[1:], value, setting, name)
    else:
        new = _cast(current, value, setting)
    return dataclasses.replace(params, **{path[0]: new})


def _cast(current: Any, value: Any, setting: str) -> Any:
    """`value` as the type of the field it replaces (`current`), or a clear error."""
    kind = np.asarray(current).dtype
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if np.issubdtype(kind, np.bool_):
        ok, wanted = isinstance(value, bool), "true or false"
    elif np.issubdtype(kind, np.integer):
        ok, wanted = number and float(value).is_integer(), "a whole number"
    elif np.issubdtype(kind, np.number):
        ok, wanted = number, "a number"
    elif isinstance(current, str):  # A name (XLand-MiniGrid's benchmark=trivial-21k).
        ok, wanted = isinstance(value, str), "a name"
    else:
        ok, wanted = False, "a field of numbers, true/false or a name (this one is not)"
    if not ok:
        raise ValueError(f"--env-params {setting!r}: the field is {current!r}; give {wanted}.")
    if hasattr(current, "dtype"):  # An array field stays an array of its dtype.
        return np.asarray(value, kind)
    return type(current)(value)


def spec(name: str, env_params: Sequence[str] = ()) -> EnvSpec:
    """The observation and action spaces an agent sees of environment `name`, JAX or host
    (with a JAX environment's params set by `env_params`, see `with_params`)."""
    from purerl.envs.base import env_spec
    from purerl.envs.host import agent_observation_space, as_gymnasium, check_spaces

    loop, made = with_params(resolve(name), env_params, name)
    if loop == "device":
        return env_spec(*made)
    env = as_gymnasium(made(), name)
    try:
        check_spaces(env.observation_space, env.action_space, name)
        return EnvSpec(agent_observation_space(env.observation_space), env.action_space)
    finally:
        env.close()


def make_host(name: str, num_envs: int, mode: str = "sync", **kwargs: Any) -> Any:
    """A `HostVecEnv` of `num_envs` copies of the host environment `name` (see `resolve`).

    `mode` is "sync" (stepped in turn in this process) or "async" (a subprocess each)."""

    loop, env_fn = resolve(name, **kwargs)
    if loop != "host":
        raise ValueError(f"{name!r} is a JAX environment; it runs on the device loop (make).")
    return host_vec_env(env_fn, num_envs, name, mode)


def host_vec_env(
    env_fn: Any,
    num_envs: int,
    name: str,
    mode: str = "sync",
    workers: int = 2,
    ray_address: str | None = None,
) -> Any:
    """The host loop's batch of `env_fn`'s environments: EnvPool's own batch for an
    `envpool:ID`; with `mode` "ray", a `RayVecEnv` (the envs in `workers` Ray actors, on the
    cluster at `ray_address` or a local Ray); else a `HostVecEnv` (Gymnasium's vector API)."""
    from purerl.envs.host import HostVecEnv

    if name.startswith("envpool:"):
        from purerl.envs.envpool_env import EnvPoolVecEnv

        return EnvPoolVecEnv(env_fn, num_envs, name, mode)
    if mode == "ray":
        from purerl.envs.ray_env import RayVecEnv

        return RayVecEnv(env_fn, num_envs, name, workers, ray_address)
    return HostVecEnv(env_fn, num_envs, name, mode)


def _gymnasium_fn(env_id: str, kwargs: dict[str, Any]) -> Callable[[], Any]:
    import gymnasium
    from purerl.envs.atari import is_atari, make_atari, register

    if is_atari(env_id):
        register()
        if env_id not in gymnasium.registry:
            raise ValueError(
                f"Unknown Atari environment {env_id!r} (ale-py's ids: ALE/Breakout-v5, ...)."
            )
        return functools.partial(make_atari, env_id, **kwargs)

    if ":" in env_id:  # "my_pkg.envs:MyEnv-v0": the module registers the id when imported.
        module_name, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"Cannot import module {module_name!r} for {env_id!r}: {e}") from e
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error as e:
        close = difflib.get_close_matches(env_id.split(":")[-1], list(gymnasium.registry), n=3)
        hint = f" Did you mean {', '.join('gymnasium:' + c for c in close)}?" if close else ""
        detail = hint if close else f" ({e})"
        raise ValueError(f"Unknown Gymnasium environment {env_id!r}.{detail}") from None
    except ImportError as e:
        raise ValueError(f"Cannot import the module of Gymnasium id {env_id!r}: {e}") from None
    return functools.partial(_make_gymnasium, env_id, **kwargs)


def _make_gymnasium(env_id: str, **kwargs: Any) -> Any:
    import gymnasium

    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.DependencyNotInstalled as e:
        raise ValueError(f"gymnasium:{env_id} needs a package that is not installed: {e}") from e


def _host_fn(obj: Any, name: str, kwargs: dict[str, Any]) -> Callable[[], Any] | None:
    """A factory of host envs when `obj` (from `module:Attr`) makes Gymnasium or dm_env envs."""
    import gymnasium

    host_types: tuple[type, ...] = (gymnasium.Env,)
    try:
        import dm_env

        host_types += (dm_env.Environment,)
    except ImportError:
        pass
    if isinstance(obj, host_types):
        raise ValueError(
            f"{name!r} is an environment instance; the host loop runs several copies, so "
            "name its class or a factory function instead."
        )
    if isinstance(obj, type):
        return functools.partial(obj, **kwargs) if issubclass(obj, host_types) else None
    if callable(obj) and not hasattr(obj, "step"):
        probe = obj(**kwargs)
        if isinstance(probe, host_types):
            probe.close()
            return functools.partial(obj, **kwargs)
    return None
