"""The `purerl` command: agents and tools from one entry point, errors in one style, presets."""

import re
import subprocess
import sys

import purerl
import pytest
from purerl.agents.ppo import A2CConfig, PPOConfig
from purerl.experiments import cli, command, presets
from purerl.experiments.engine.config import RunConfig


def test_help_lists_every_registered_agent_and_the_tools(capsys):
    command.purerl_main(["--help"])
    out = capsys.readouterr().out
    for name in ("ppo", "dqn", "sac", "r2d2", "rainbow", "plot", "enjoy", "resume", "check-envs"):
        assert f"  {name} " in out
    command.purerl_main(["--version"])
    assert capsys.readouterr().out.strip() == f"purerl {purerl.__version__}"


def test_an_unknown_agent_is_refused_with_the_closest_name(capsys):
    with pytest.raises(SystemExit) as stop:
        command.purerl_main(["ppp", "--env", "CartPole-v1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown agent or command 'ppp'") and "did you mean 'ppo'" in err


def test_python_dash_m_purerl_experiments_is_the_purerl_command():
    out = subprocess.run(
        [sys.executable, "-m", "purerl.experiments", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "usage: purerl AGENT" in out.stdout


@pytest.mark.parametrize(
    "message, want",
    [
        (
            "--resume x: no such directory. Give a run directory (runs/...).",
            "error: --resume x: no such directory.\n  Give a run directory (runs/...).",
        ),
        ("a is wrong; do b", "error: a is wrong;\n  do b"),
        ("one line, e.g. this", "error: one line, e.g. this"),
        ("first\nthen this", "error: first\n  then this"),
    ],
)
def test_errors_have_one_style_what_is_wrong_then_what_to_do(message, want):
    assert cli.format_error(message) == want


def test_a_bad_option_value_is_a_plain_error_not_a_panel(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse(cli.experiment_class("ppo"), ["--num-envs", "abc"], prog="purerl ppo")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Error parsing --num-envs") and "│" not in err
    assert "purerl ppo --help lists every option" in err


def test_an_unknown_yaml_key_suggests_the_closest_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num_env: 4\n")
    with pytest.raises(ValueError, match="unknown option 'num_env'.\ndid you mean num_envs"):
        cli.parse(cli.experiment_class("ppo"), ["--config", str(path)])


def test_given_options_come_from_flags_and_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gamma: 0.9\nnum-steps: 64\n")
    given = presets.given_options(
        ["--env", "X", "--no-plot", "--ent-coef=0.1", "--config", str(path)]
    )
    assert {"env", "plot", "ent_coef", "gamma", "num_steps"} <= given


def test_ppo_takes_its_continuous_preset_where_no_flag_sets_it(capsys):
    run = RunConfig(env="Pendulum-v1")
    longer, config = presets.with_preset(PPOConfig(), run, given={"num_envs"})
    out = capsys.readouterr().out
    assert out.startswith("preset for continuous actions + Pendulum-v1") and "--num-envs" not in out
    assert config.update_epochs == 10 and config.num_envs == PPOConfig().num_envs
    assert config.gamma == 0.95 and longer.total_timesteps == 1_000_000
    # Discrete actions keep the defaults, and A2C (one step per rollout) has no preset.
    cartpole = RunConfig(env="CartPole-v1")
    assert presets.with_preset(PPOConfig(), cartpole, set()) == (cartpole, PPOConfig())
    assert presets.with_preset(A2CConfig(), run, set()) == (run, A2CConfig())


def test_the_startup_says_it_is_compiling_and_how_long_it_took(tmp_path, capsys):
    from purerl.experiments import ppo

    ppo.main(
        ["--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "16", "--num-logs", "1"]
        + ["--run-dir", str(tmp_path / "r"), "--no-plot", "--num-devices", "1"]
    )
    out = capsys.readouterr().out
    assert re.search(r"\n  compiling \.\.\. \d+\.\ds\n", out), out
