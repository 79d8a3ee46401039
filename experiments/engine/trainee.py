"""What a run trains: a registered agent with its config, or an agent of your own, and how to
rebuild it from the run directory's `config.json`.

A registered agent is rebuilt from its config class (`"agent_source"`). An agent of your own
is rebuilt from the importable factory that made it (`"factory": "my_pkg.agents:make_myq"`),
or, where there is none to record, from the agent the caller passes again
(`load_policy(run_dir, agent=...)`, `purerl.train(..., resume=run_dir)`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from purerl.agents import registry
from purerl.core import Agent, Context, Recipe
from purerl.replay.base import DataPath, Schedule

Build = Callable[[Context], Recipe]


@dataclasses.dataclass(frozen=True)
class Trainee:
    """An agent as a run trains it.

    Attributes:
      name: its name in the run directory's name and the summary.
      build: `(context) -> Recipe`, the recipe sized for a run.
      record: what `config.json` records to rebuild it (`agent`, and `agent_source` or
        `factory`).
      config: a registered agent's config (None for an agent of your own).
      entry: a registered agent's registry entry (None for an agent of your own).
    """

    name: str
    build: Build
    record: dict[str, Any]
    config: Any = None
    entry: registry.Entry | None = None


def registered(entry: registry.Entry, config: Any) -> Trainee:
    """A registered agent with its config."""
    return Trainee(
        entry.name,
        lambda context: entry.recipe(config, context),
        {"agent": entry.name, "agent_source": entry.source},
        config,
        entry,
    )


Made = Agent | Recipe | Callable[..., Agent | Recipe] | str


def _call(factory: Callable[..., Any], context: Context) -> Any:
    """`factory()`, or `factory(context)` where it takes an argument without a default."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return factory()
    needs = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return factory(context) if needs else factory()


def user(
    agent: Made,
    data: DataPath | None = None,
    schedule: Schedule | None = None,
    *,
    num_envs: int | None = None,
    discount: float | None = None,
    name: str = "custom",
) -> Trainee:
    """An agent of your own, given as an `Agent` (with its data path and schedule), a
    `Recipe`, or a factory returning either (a function, or `"module:function"`; called with
    no arguments, or with the run's `purerl.Context` where it takes one). An importable
    factory is recorded in `config.json`, so the run can be rebuilt without this call."""
    factory: Callable[..., Any] | None = None
    source = None
    if isinstance(agent, str):
        source, factory = agent, registry.load_object(agent)
        if not callable(factory):
            raise ValueError(f"{agent!r} is not a function that makes an agent.")
    elif not isinstance(agent, Agent | Recipe):
        if not callable(agent):
            raise TypeError(
                "purerl.train takes an Agent (with its data path and schedule), a Recipe, or "
                f"a factory that returns one; got {type(agent).__name__}."
            )
        factory, source = agent, registry.source_of(agent)

    def complete(made: Any) -> Recipe:
        if isinstance(made, Recipe):
            extra = [k for k, v in (("data", data), ("schedule", schedule)) if v is not None]
            if extra:
                raise ValueError(
                    f"purerl.train got a Recipe and also {' and '.join(extra)}; the Recipe "
                    "holds them already: give one or the other."
                )
            if num_envs is not None or discount is not None:
                return made._replace(
                    num_envs=made.num_envs if num_envs is None else num_envs,
                    discount=made.discount if discount is None else discount,
                )
            return made
        if not isinstance(made, Agent):
            raise TypeError(
                f"The agent factory returned {type(made).__name__}; it must return a "
                "purerl.Agent or a purerl.Recipe."
            )
        # Without a data path and schedule the agent can be loaded, not trained (`build`
        # refuses it then).
        envs = 8 if num_envs is None else num_envs
        return Recipe(made, data, schedule, envs, 0.99 if discount is None else discount)

    if factory is None:
        fixed = complete(agent)

        def build(context: Context) -> Recipe:
            return fixed
    else:

        def build(context: Context) -> Recipe:
            return complete(_call(factory, context))

    record: dict[str, Any] = {"agent": name}
    if source is not None:
        record["factory"] = source
        record["recipe"] = {"num_envs": num_envs, "discount": discount}
    return Trainee(name, build, record)


def from_saved(saved: dict[str, Any], agent: Made | None = None) -> Trainee:
    """The trainee of a run, from its `config.json` (`rundir.read_config`): a registered
    agent (by its name, or its recorded config class where a plugin is not installed), an
    agent of your own by its recorded factory, or `agent` where the caller gives it."""
    name = saved["agent"]
    if agent is not None:
        return user(agent, name=name, **_recorded(saved))
    if saved.get("factory"):
        try:
            return user(saved["factory"], name=name, **_recorded(saved))
        except ValueError as e:
            raise ValueError(
                f"{e}\nThe run's agent comes from that factory; or pass the agent it was "
                "trained with: load_policy(run_dir, agent=AGENT), purerl.train(AGENT, ..., "
                "resume=run_dir)."
            ) from None
    source = saved.get("agent_source")
    if name in registry.built_in() or not source:
        try:
            entry = registry.get(name)
        except ValueError:
            raise ValueError(
                f"The run's agent {name!r} is not registered and the run records no factory "
                "to rebuild it from. Pass the agent: load_policy(run_dir, agent=AGENT) or "
                "purerl.train(AGENT, ..., resume=run_dir), where AGENT is the Agent, Recipe "
                "or factory it was trained with (or register it with "
                "purerl.register_agent)."
            ) from None
    else:
        entry = registry.Entry(name, source)
    fields = saved.get("agent_config") or {}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        config = entry.config_class()(**fields)
    except TypeError as e:
        raise ValueError(
            f"The run's {name} config does not fit this version's {entry.source} ({e})."
        ) from None
    return registered(entry, config)


def _recorded(saved: dict[str, Any]) -> dict[str, Any]:
    """The env count and discount recorded with a factory that makes an Agent."""
    recipe = saved.get("recipe") or {}
    return {"num_envs": recipe.get("num_envs"), "discount": recipe.get("discount")}
