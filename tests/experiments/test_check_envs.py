"""`python -m purerl.experiments.check_envs --help` says what it does and each option's use
and default."""

import pytest
from purerl.agents import registry
from purerl.experiments import check_envs


def test_help_describes_the_command_and_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        check_envs.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # Unwrapped.
    assert text.startswith("usage: python -m purerl.experiments.check_envs ")
    assert "Every JAX environment" in text  # The description.
    assert f"the agents to try (default: all registered: {' '.join(registry.names())})" in text
    assert "the environments to try, any --env name (default: every JAX environment" in text
    assert "env steps each agent trains on each env (default: 2000)" in text


def test_an_unknown_agent_or_no_steps_is_refused_before_anything_trains(capsys):
    for argv, message in ((["--agents", "dqm"], "Unknown agent 'dqm'"), (["--steps", "0"], "")):
        with pytest.raises(SystemExit) as e:
            check_envs.main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
