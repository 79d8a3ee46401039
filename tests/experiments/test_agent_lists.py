"""The agents a refusal suggests come from the registry, not from a list written by hand."""

import dataclasses

import gymnasium
import numpy as np
import pytest
from purerl.agents import registry
from purerl.core import require_box, require_discrete
from purerl.experiments.agent_lists import agents_for, agents_hint

DISCRETE = gymnasium.spaces.Discrete(2)
BOX = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)


def test_every_agent_that_takes_each_kind_of_actions_is_listed():
    assert agents_for("discrete") == [
        "a2c", "c51", "dqn", "impala", "ppo", "qrdqn", "r2d2", "rainbow"
    ]  # fmt: skip
    assert agents_for("continuous") == ["a2c", "ddpg", "impala", "ppo", "sac", "td3"]
    assert set(agents_for("discrete")) | set(agents_for("continuous")) == set(registry.names())
    assert agents_hint(DISCRETE) == (
        "Agents for discrete actions: a2c, c51, dqn, impala, ppo, qrdqn, r2d2, rainbow."
    )
    assert agents_hint(gymnasium.spaces.MultiBinary(3)) == ""
    with pytest.raises(ValueError, match="kind must be"):
        agents_for("Discrete")


def test_action_spaces_is_a_class_attribute_not_an_option():
    for name in registry.names():
        config = registry.get(name).config_class()
        assert "action_spaces" not in {f.name for f in dataclasses.fields(config)}


def test_the_refusals_in_core_list_no_agents_by_hand():
    for require, space in ((require_discrete, BOX), (require_box, DISCRETE)):
        with pytest.raises(ValueError) as e:
            require(space, "X")
        words = set(str(e.value).replace(",", " ").replace("(", " ").split())
        assert not words & set(registry.names()), str(e.value)
