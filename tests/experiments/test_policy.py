import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import purerl
import pytest
from purerl import envs
from purerl.agents.ppo import PPOConfig
from purerl.experiments import ppo
from purerl.experiments.engine.config import RunConfig
from purerl.experiments.engine.evaluate import epsilon_greedy, evaluate, stateless
from purerl.experiments.engine.policy import POLICY_FILE, eval_key


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "ppo"
    run = RunConfig(
        total_timesteps=40_000,
        num_logs=2,
        seed=3,
        num_seeds=2,
        eval_episodes=4,
        run_dir=str(path),
        quiet=True,
        num_devices=1,
    )
    ppo.run(run, PPOConfig(num_envs=8, num_steps=32))
    return path


def test_evaluate_runs_each_episode_to_its_end():
    env, params = envs.make("tests.envs.my_jax_env:Corridor")  # Length 5, 20 steps at most.
    right = jax.jit(
        lambda k: evaluate(
            stateless(lambda o, _: jnp.ones(o.shape[0], jnp.int32)), env, params, k, 3
        )
    )
    episodes = right(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(episodes.returns, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(episodes.lengths, [5, 5, 5])  # Five steps right.
    assert bool(episodes.finished.all()) and not bool(episodes.truncated.any())
    left = stateless(lambda o, _: jnp.zeros(o.shape[0], jnp.int32))
    episodes = evaluate(left, env, params, jax.random.PRNGKey(0), 2)
    np.testing.assert_array_equal(episodes.returns, [0.0, 0.0])  # Truncated after 20 steps.
    np.testing.assert_array_equal(episodes.lengths, [20, 20])
    assert bool(episodes.finished.all()) and bool(episodes.truncated.all())
    episodes = evaluate(left, env, params, jax.random.PRNGKey(0), 2, max_steps=5)
    assert not bool(episodes.finished.any()) and not bool(episodes.truncated.any())
    np.testing.assert_array_equal(episodes.lengths, [5, 5])  # Its length so far.


def test_eval_epsilon_acts_at_random_that_often_and_only_for_discrete_actions():
    import gymnasium

    env, params = envs.make("tests.envs.my_jax_env:Corridor")  # Length 5, 20 steps at most.
    space = gymnasium.spaces.Discrete(2)
    left = stateless(lambda o, _: jnp.zeros(o.shape[0], jnp.int32))  # Never reaches the end.
    assert epsilon_greedy(left, 0.0, space) is left  # Greedy, with the same keys.

    def run(eps: float) -> np.ndarray:
        policy = epsilon_greedy(left, eps, space)
        return jax.jit(lambda k: evaluate(policy, env, params, k, 200)[0])(jax.random.PRNGKey(0))

    np.testing.assert_array_equal(run(0.0), np.zeros(200))
    # Uniformly random actions walk the corridor's 5 cells within 20 steps now and then.
    reached = float(np.mean(run(1.0)))
    assert 0.05 < reached < 0.6, reached
    assert float(np.mean(run(0.01))) < reached
    with pytest.raises(ValueError, match="--eval-epsilon 0.1 picks random actions from a discrete"):
        epsilon_greedy(left, 0.1, gymnasium.spaces.Box(-1.0, 1.0, (1,)))
    with pytest.raises(ValueError, match=r"--eval-epsilon must be in \[0, 1\]"):
        RunConfig(eval_epsilon=1.5)
    with pytest.raises(ValueError, match="add --eval-episodes N"):
        RunConfig(eval_epsilon=0.01)  # No evaluation for it to apply to.


def test_a_run_with_eval_epsilon_on_continuous_actions_is_refused_before_training(tmp_path):
    args = ["--env", "Pendulum-v1", "--eval-epsilon", "0.1", "--eval-episodes", "2"]
    args += ["--run-dir", str(tmp_path / "r")]
    with pytest.raises(ValueError, match="leave --eval-epsilon at 0"):
        ppo.main([*args, "--quiet", "--no-plot", "--num-devices", "1"])
    assert not (tmp_path / "r").exists()


def test_enjoy_takes_an_evaluation_epsilon(run_dir, capsys):
    from purerl.experiments import enjoy

    def mean_return(*extra: str) -> float:
        enjoy.main([str(run_dir), "--episodes", "8", *extra])
        return float(capsys.readouterr().out.split("return ")[1].split()[0])

    greedy, random = mean_return(), mean_return("--epsilon", "1.0")
    assert random < greedy and random < 60  # Random CartPole lasts about 22 steps.
    with pytest.raises(SystemExit):
        enjoy.main([str(run_dir), "--epsilon", "2"])
    assert "--epsilon must be in [0, 1]" in capsys.readouterr().err


def test_load_policy_reproduces_the_runs_evaluation(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    env, params = envs.make("CartPole-v1")
    for index, seed in enumerate([3, 4]):
        policy = purerl.load_policy(run_dir, seed_index=index)
        returns = jax.jit(lambda k, p=policy: evaluate(p, env, params, k, 4))(eval_key(seed))[0]
        assert float(np.mean(returns)) == summary["eval_return"][index]
    action = policy(jnp.zeros((5, 4)), jax.random.PRNGKey(0))
    assert action.shape == (5,) and action.dtype == jnp.int32


def test_enjoy_reports_episode_returns(run_dir):
    out = subprocess.run(
        [sys.executable, "-m", "purerl.experiments.enjoy", str(run_dir), "--episodes", "3"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "ppo on CartPole-v1" in out.stdout and "over 3 episodes" in out.stdout
    # CartPole's lengths are its returns (a reward of 1 a step); 500 steps is its time limit.
    # The mean return is printed to 2 decimals, the mean length to 1.
    returns = float(out.stdout.split("return ")[1].split()[0])
    length = float(out.stdout.split("length ")[1].split()[0])
    cut = int(out.stdout.split("), ")[-1].split()[0])
    assert length == pytest.approx(returns, abs=0.051) and (cut == 3) == (length == 500.0)


def test_env_params_reach_training_resume_and_the_saved_policy(tmp_path, capsys):
    from purerl.experiments import dqn, enjoy

    run_dir = str(tmp_path / "short")
    args = ["--env", "tests.envs.my_jax_env:Corridor", "--env-params", "max_steps=7"]
    args += ["--learning-starts", "500", "--num-logs", "2", "--quiet", "--no-plot"]
    args += ["--run-dir", run_dir, "--checkpoint-every", "1000"]
    dqn.main([*args, "--total-timesteps", "2000"])
    summary = dqn.main(["--resume", run_dir, "--total-timesteps", "4000"])
    assert summary["env_params"] == ["max_steps=7"] and summary["total_timesteps"] >= 4000
    capsys.readouterr()
    enjoy.main([run_dir, "--episodes", "16", "--epsilon", "1.0"])
    # At random, the corridor's end (5 steps right) is seldom reached within 7 steps.
    out = capsys.readouterr().out
    assert "max 7)" in out and int(out.split("), ")[-1].split()[0]) > 8


def test_a_corrupt_policy_is_refused_with_its_path(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    policy = broken / POLICY_FILE
    policy.write_bytes(policy.read_bytes()[: policy.stat().st_size // 2])  # Truncated.
    with pytest.raises(ValueError, match="Cannot read the saved policy .*broken"):
        purerl.load_policy(broken)
    policy.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Cannot read the saved policy .*broken"):
        purerl.load_policy(broken)


def test_not_a_run_directory_or_seed_is_a_clear_error(run_dir, tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        purerl.load_policy(tmp_path)
    with pytest.raises(ValueError, match="seed_index 5 is out of range: the run has 2"):
        purerl.load_policy(run_dir, seed_index=5)


def test_an_atari_run_saved_before_the_nature_cnn_default_gets_told_how_to_load():
    import gymnasium
    from purerl.experiments.engine.policy import torso_hint

    frames = gymnasium.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    grid = gymnasium.spaces.Box(0, 1, (10, 10, 4), np.float32)
    assert '"torso": "cnn"' in torso_hint(PPOConfig(), frames)
    assert torso_hint(PPOConfig(torso="cnn"), frames) == ""
    assert torso_hint(PPOConfig(), grid) == ""  # MinAtar: unchanged.
