"""Watching a trained agent: `enjoy RUN --render FILE.gif` draws a JAX run's first evaluation
episode (gymnax classic control by its Gymnasium twin, MinAtar by gymnax's visualiser), and a
loaded policy says what it is."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl import envs
from purerl.envs.wrappers import cartpole_positions_only
from purerl.experiments import enjoy, ppo
from purerl.experiments.engine.evaluate import (
    evaluate,
    jax_renderer,
    record_episode,
    render_episode,
    stateless,
)
from purerl.experiments.engine.policy import Policy, load_policy

PIL = pytest.importorskip("PIL.Image")


def _frames(path) -> int:
    with PIL.open(path) as gif:
        return gif.n_frames


def lean_right(obs, key):  # CartPole: push towards where the pole falls.
    return (obs[:, 2] + obs[:, 3] > 0).astype(jnp.int32)


def test_the_recorded_episode_is_the_first_evaluation_episode_step_by_step():
    env, params = envs.make("CartPole-v1")
    key = jax.random.PRNGKey(4)
    for policy in (stateless(lean_right), stateless(lambda o, k: jnp.zeros(o.shape[0], jnp.int32))):
        episodes = evaluate(policy, env, params, key, 3)
        states, returns = record_episode(policy, env, params, key, 3)
        # One state before each step, the reset one first; CartPole pays 1 a step.
        assert len(states) == int(episodes.lengths[0]) == len(returns)
        assert returns[0] == 0.0 and returns[-1] == float(episodes.returns[0]) - 1.0
        assert np.shape(states[0].theta) == ()  # One env's state, unbatched.


def test_envs_it_cannot_draw_are_refused_before_anything_runs():
    env, _ = envs.make("tests.envs.my_jax_env:Corridor")
    with pytest.raises(ValueError, match="--render cannot draw the JAX environment corridor; "):
        jax_renderer(env, "corridor")
    with pytest.raises(ValueError) as e:
        jax_renderer(env, "corridor")
    assert "CartPole-v1" in str(e.value) and "gymnasium:ID" in str(e.value)


def test_minatar_is_drawn_by_gymnax_visualiser(tmp_path):
    pytest.importorskip("seaborn")  # gymnax's MinAtar visualiser draws with it.
    env, params = envs.make("Breakout-MinAtar")
    policy = stateless(lambda o, k: jax.random.randint(k, (o.shape[0],), 0, 3))
    key = jax.random.PRNGKey(0)
    length = int(evaluate(policy, env, params, key, 2, max_steps=60).lengths[0])
    path = tmp_path / "breakout.gif"
    render_episode(policy, env, params, key, 2, str(path), "Breakout-MinAtar", max_steps=60)
    assert 1 < _frames(path) <= length


def test_classic_control_is_drawn_by_its_gymnasium_twin_through_wrappers(tmp_path):
    pytest.importorskip("pygame")
    env, params = cartpole_positions_only()  # Masked observations; the state is CartPole's.
    policy = stateless(lambda o, k: (o[:, 1] > 0).astype(jnp.int32))
    key = jax.random.PRNGKey(1)
    length = int(evaluate(policy, env, params, key, 1).lengths[0])
    path = tmp_path / "cartpole.gif"
    render_episode(policy, env, params, key, 1, str(path), "positions only")
    assert 1 < _frames(path) <= length  # GIF frames that repeat the last are merged.


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "ppo"
    argv = ["--env", "CartPole-v1", "--total-timesteps", "4096", "--num-envs", "4"]
    ppo.main([*argv, "--num-devices", "1", "--run-dir", str(path), "--quiet"])
    return path


def test_enjoy_renders_a_gymnax_cartpole_run(cartpole_run, tmp_path, capsys):
    path = tmp_path / "episode.gif"
    argv = [str(cartpole_run), "--episodes", "2", "--render", str(path)]
    try:
        import pygame  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit) as e:  # Refused with what to install, nothing run.
            enjoy.main(argv)
        assert e.value.code == 2
        assert 'pip install -e ".[render]"' in capsys.readouterr().err
        assert not path.exists()
        return
    enjoy.main(argv)
    assert f"video of the first episode: {path}" in capsys.readouterr().out
    assert _frames(path) > 1


def test_a_loaded_policy_says_what_it_is(cartpole_run):
    assert (
        repr(load_policy(cartpole_run)) == "Policy(ppo on CartPole-v1, seed index 0, feed-forward)"
    )

    class Recurrent:  # What Policy reads of an agent.
        initial_carry = staticmethod(lambda batch_size: jnp.zeros((batch_size, 4)))
        act = None

    policy = Policy(Recurrent(), None, agent_name="r2d2", env_name="Memory", seed_index=2)
    assert repr(policy) == "Policy(r2d2 on Memory, seed index 2, recurrent)"
