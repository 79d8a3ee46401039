"""Which registered agents act in which kind of action space, read from the registry, for
the command line's suggestions when an agent is refused an environment's actions.

An agent's config class says which it takes in a class attribute (not an option):
`action_spaces = ("discrete",)`, `("continuous",)` or both. Agents that do not say (a
plugin's, say) are left out of the lists.
"""

from __future__ import annotations

import gymnasium

DISCRETE, CONTINUOUS = "discrete", "continuous"


def action_space_kind(space: gymnasium.spaces.Space) -> str | None:
    """ "discrete" for a `Discrete` space, "continuous" for a one-dimensional `Box`, None for
    any other (no agent takes it)."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return DISCRETE
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        return CONTINUOUS
    return None


def agents_for(kind: str) -> list[str]:
    """The registered agents (purerl's and installed plugins'), sorted, whose config class
    declares `kind` ("discrete" or "continuous") in its `action_spaces`."""
    from purerl.agents import registry

    if kind not in (DISCRETE, CONTINUOUS):
        raise ValueError(f"kind must be {DISCRETE!r} or {CONTINUOUS!r}; got {kind!r}.")
    names = []
    for name in registry.names():
        try:
            config = registry.get(name).config_class()
        except ValueError:  # A plugin whose package does not import: it cannot run anyway.
            continue
        if kind in getattr(config, "action_spaces", ()):
            names.append(name)
    return names


def agents_hint(space: gymnasium.spaces.Space) -> str:
    """A sentence naming the agents that take `space`'s actions ("" when none does), to
    follow an agent's refusal of them."""
    kind = action_space_kind(space)
    names = agents_for(kind) if kind else []
    if not names:
        return ""
    return f"Agents for {kind} actions: {', '.join(names)}."
