"""The loop pieces on their own: the rollout (carry reset, warm-up), the learner step
(data path store / sample / learn / update, gradient steps) and the host loop's splitting
and version hand-off."""

import threading

import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from purerl import envs
from purerl.core import PRIORITIES, Agent
from purerl.envs.wrappers import EpisodeStatistics, VecEnv
from purerl.experiments.engine.anakin import make_mesh, rollout
from purerl.experiments.engine.loop import Runner, make_learner, trajectory_example
from purerl.experiments.engine.sebulba import _split, _Versions
from purerl.replay import Schedule, on_policy, prioritized_replay, uniform_replay


def counting_agent(action=0):
    """Always takes `action`; its carry counts the steps since its episode began; `learn`
    counts its calls and reports each sample's index as its priority."""

    def act(state, carry, obs, key, deterministic=False):
        n = obs.shape[0]
        return jnp.full((n,), action, jnp.int32), carry + 1, {}

    def learn(state, batch, key):
        return state + 1, {"calls": state + 1.0, PRIORITIES: batch.indices.astype(jnp.float32)}

    return Agent(
        init=lambda key, spec: jnp.zeros((), jnp.int32),
        act=act,
        learn=learn,
        initial_carry=lambda n: jnp.zeros((n,), jnp.int32),
    )


def run_rollout(agent, schedule, num_envs=4):
    env, params = envs.make("CartPole-v1")
    vec = VecEnv(EpisodeStatistics(env), num_envs)
    space = env.action_space(params)

    def go(key):
        obs, env_state = vec.reset(key, params)
        runner = Runner(
            jnp.zeros((), jnp.int32),
            env_state,
            obs,
            agent.initial_carry(num_envs),
            (),
            jnp.zeros((), jnp.int32),
            key,
        )
        return rollout(agent, vec, params, runner, schedule, space, num_envs)

    step = jax.jit(jax.shard_map(go, mesh=make_mesh(1), in_specs=P(), out_specs=P()))
    return step(jax.random.PRNGKey(0))


def test_rollout_resets_the_carry_where_episodes_end():
    runner, traj, stats = run_rollout(counting_agent(), Schedule(rollout_length=60))
    # Always pushing left ends CartPole episodes within a few dozen steps.
    done = np.asarray(traj.terminated | traj.truncated)
    assert done.any() and float(stats.count) == done.sum()
    carry = np.asarray(traj.carry)  # [T, B]: the carry each action was chosen with.
    for b in range(4):
        expected, count = [], 0
        for t in range(60):
            expected.append(count)
            count = 0 if done[t, b] else count + 1
        np.testing.assert_array_equal(carry[:, b], expected)
    assert int(runner.steps) == 60 * 4


def test_warmup_actions_are_random_then_the_agents():
    _, traj, _ = run_rollout(counting_agent(action=1), Schedule(10, warmup_steps=5 * 4))
    actions = np.asarray(traj.action)
    assert set(np.unique(actions[:5])) == {0, 1}  # Uniformly random during the warm-up.
    np.testing.assert_array_equal(actions[5:], 1)  # The agent's own afterwards.


def learner_round(data, schedule, trajectory):
    agent = counting_agent()
    learn = jax.jit(make_learner(agent, data, schedule))
    runner = Runner(
        jnp.zeros((), jnp.int32),
        (),
        (),
        (),
        data.init(trajectory),
        jnp.zeros((), jnp.int32),
        jax.random.PRNGKey(0),
    )
    return learn, runner


def test_learner_waits_for_the_data_path_then_takes_its_gradient_steps():
    traj = {"x": jnp.zeros((2, 4), jnp.float32)}  # 8 transitions per update.
    data = uniform_replay(capacity=64, batch_size=4, min_size=16)
    learn, runner = learner_round(data, Schedule(2, gradient_steps=3), traj)
    runner, metrics = learn(runner, traj)
    assert int(runner.agent_state) == 0 and float(metrics["calls"]) == 0  # 8 < min_size.
    assert PRIORITIES not in metrics
    runner, metrics = learn(runner, traj)
    assert int(runner.agent_state) == 3  # 16 stored: three gradient steps.
    np.testing.assert_allclose(metrics["calls"], 2.0)  # Mean of 1, 2, 3.
    assert int(runner.data_state.size) == 16


def test_learner_writes_priorities_back_to_a_prioritised_path():
    traj = {"x": jnp.zeros((1, 8), jnp.float32)}
    data = prioritized_replay(capacity=8, batch_size=8, alpha=1.0, eps=0.0)
    learn, runner = learner_round(data, Schedule(1), traj)
    runner, _ = learn(runner, traj)
    leaves = np.asarray(runner.data_state.tree[-1][:8])
    sampled = set(np.flatnonzero(leaves != 1.0)) | {0}
    # Each sampled slot now holds its own index as priority; unsampled ones keep the max (1).
    for i in range(8):
        assert leaves[i] == (i if i in sampled else 1.0)


def test_on_policy_learner_learns_from_each_rollout_once():
    traj = {"x": jnp.arange(8.0).reshape(2, 4)}
    agent = Agent(
        init=lambda key, spec: jnp.zeros(()),
        act=None,
        learn=lambda state, batch, key: (state + jnp.sum(batch["x"]), {"sum": jnp.sum(batch["x"])}),
    )
    data = on_policy()
    learn = jax.jit(make_learner(agent, data, Schedule(2)))
    runner = Runner(
        jnp.zeros(()), (), (), (), data.init(traj), jnp.zeros((), jnp.int32), jax.random.PRNGKey(0)
    )
    runner, metrics = learn(runner, traj)
    np.testing.assert_allclose(metrics["sum"], 28.0)
    runner, metrics = learn(runner, jax.tree.map(lambda x: 2 * x, traj))
    np.testing.assert_allclose(runner.agent_state, 28.0 + 56.0)


def test_trajectory_example_has_the_acting_dtypes_and_carry():
    agent = counting_agent()
    example = trajectory_example(agent, None, jnp.zeros((3, 4)), jax.random.PRNGKey(0), 5)
    chex.assert_shape([example.action, example.reward, example.carry], (5, 3))
    assert example.action.dtype == jnp.int32 and example.carry.dtype == jnp.int32


def test_host_split_puts_each_devices_envs_together():
    x = np.arange(2 * 3 * 4).reshape(2 * 3, 4)  # [k * T, B] with k = 2, T = 3, B = 4
    out = _split(x, 2, 2)  # -> [D, k, T, B / D]
    assert out.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(out[1, 0, :, :], x[:3, 2:])
    np.testing.assert_array_equal(out[0, 1, :, :], x[3:, :2])


def test_versions_hand_states_from_learner_to_actor_in_order():
    versions = _Versions()
    got = []

    def actor():
        for v in range(3):
            got.append(versions.get(v))

    thread = threading.Thread(target=actor)
    thread.start()
    for v in range(3):
        versions.publish(v, f"state {v}")
    thread.join(timeout=5)
    assert got == ["state 0", "state 1", "state 2"]
    versions.close()
    with pytest.raises(Exception, match="learner stopped"):
        versions.get(7)


def test_random_actions_of_both_space_kinds():
    from purerl.core import random_actions

    box = gymnasium.spaces.Box(np.array([-1.0, 0.0]), np.array([1.0, 5.0]), dtype=np.float32)
    a = random_actions(box, jax.random.PRNGKey(0), 1000)
    assert a.shape == (1000, 2) and np.all(a[:, 1] >= 0) and np.all(a[:, 1] <= 5)
    d = random_actions(gymnasium.spaces.Discrete(3, start=1), jax.random.PRNGKey(0), 1000)
    assert set(np.unique(d)) == {1, 2, 3}


@pytest.mark.parametrize("name,num_seeds", [("dqn", 1), ("dqn", 2), ("rainbow", 1)])
def test_device_loop_updates_the_replay_buffer_in_place(name, num_seeds):
    # Each update writes one rollout into the buffer: if XLA copies the observations instead
    # (as it did when the single-seed carry was reshaped inside the scan), an update costs
    # O(capacity) and a 1e5 buffer runs 200x slower.
    from purerl.agents.registry import Context, get
    from purerl.experiments.engine.anakin import DeviceLoop

    entry = get(name)
    capacity = 4096
    config = entry.config_class()(num_envs=1, buffer_size=capacity, learning_starts=64)
    env, params = envs.make("CartPole-v1")
    recipe = entry.recipe(config, Context(1, 100))
    loop = DeviceLoop(recipe, env, params, 4, make_mesh(1), num_seeds=num_seeds)
    loop.init()
    hlo = loop._step.as_text()
    copies = [
        line
        for line in hlo.splitlines()
        if " copy(" in line and f"{capacity},4]" in line.split("copy(")[0]
    ]
    assert not copies, "\n".join(copies)
