"""Host envs in Ray actors (`--host-envs ray`): they step as the sync envs do, PPO and DQN
train to the same parameters as with sync envs, a killed worker is made afresh and its
rollout dropped while the run goes on (and resumes), an env that raises stops the run as in
the sync path, and a cluster that is not there is refused before the run starts.

One Ray serves the module: a two-node cluster (`ray.cluster_utils.Cluster`, one CPU each),
so every run here spreads its two workers over two nodes."""

import csv
import importlib
import os
import threading
import time
import warnings

import numpy as np
import pytest
from purerl import envs
from purerl.envs.host import EnvsRestarted, HostEnvError
from purerl.envs.ray_env import RayVecEnv, placement, slices

ray = pytest.importorskip("ray")

CARTPOLE = "gymnasium:CartPole-v1"
# A short time limit, so the steps hold both terminations and truncations.
SHORT = envs.resolve(CARTPOLE, max_episode_steps=30)[1]
EXPLODING = "tests.envs.my_host_envs:Exploding"
EXPLODE_AT = 600  # Env steps of one worker's process: vector step 300 with 2 envs a worker.


def test_an_unreachable_cluster_is_refused_before_the_run_starts(tmp_path):
    # First in the module: the process is not connected to Ray yet, so the address is used.
    from purerl.experiments import ppo

    assert not ray.is_initialized()
    args = ["--env", CARTPOLE, "--host-envs", "ray", "--ray-address", "127.0.0.1:1"]
    with pytest.raises(ValueError, match=r"127\.0\.0\.1:1.*is a Ray cluster running there\?"):
        ppo.main([*args, "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert not (tmp_path / "run").exists()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def two_nodes():
    """A Ray of two nodes that this process joins; the workers' processes see
    $PURERL_TEST_EXPLODE_AT (they inherit the nodes' environment)."""
    from ray.cluster_utils import Cluster

    before = os.environ.get("PURERL_TEST_EXPLODE_AT")
    os.environ["PURERL_TEST_EXPLODE_AT"] = str(EXPLODE_AT)
    with warnings.catch_warnings():  # JAX warns of any fork; these start Ray's nodes.
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="WARNING", include_dashboard=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    if before is None:
        os.environ.pop("PURERL_TEST_EXPLODE_AT")
    else:
        os.environ["PURERL_TEST_EXPLODE_AT"] = before


def kill(worker):
    """Kills a worker through Ray, returning once it is dead (`ray.kill` returns before)."""
    ray.kill(worker)
    with pytest.raises(ray.exceptions.RayActorError):
        for _ in range(200):
            ray.get(worker.node.remote())
            time.sleep(0.05)


def test_slices_are_fixed_and_cover_every_env_once():
    assert slices(5, 2) == [(0, 3), (3, 5)]
    assert slices(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert slices(2, 2) == [(0, 1), (1, 2)]


def test_the_placement_names_each_nodes_workers():
    a, b = ("id-a", "10.0.0.1", "alpha"), ("id-b", "10.0.0.2", "beta")
    assert placement([a, a, b, a]) == "workers 0-1, 3 on alpha (10.0.0.1), 2 on beta (10.0.0.2)"
    assert placement([a]) == "worker 0 on alpha (10.0.0.1)"
    twin = ("id-c", "10.0.0.1", "alpha")  # Two Ray nodes on one machine: told apart.
    assert placement([a, twin]) == (
        "workers 0 on alpha (10.0.0.1, node id-a), 1 on alpha (10.0.0.1, node id-c)"
    )


def test_ray_envs_step_as_the_sync_envs_do_with_workers_on_both_nodes(two_nodes):
    num_envs = 5  # Uneven slices: 3 and 2.
    sync = envs.host_vec_env(SHORT, num_envs, CARTPOLE, "sync")
    in_ray = envs.host_vec_env(SHORT, num_envs, CARTPOLE, "ray", workers=2)
    assert isinstance(in_ray, RayVecEnv) and in_ray.spec == sync.spec
    assert len({node_id for node_id, _, _ in in_ray.nodes}) == 2  # SPREAD: one on each.
    assert in_ray.where.startswith("5 envs in 2 Ray workers (Ray at ")
    assert "workers 0 on " in in_ray.where and ", 1 on " in in_ray.where
    try:
        np.testing.assert_array_equal(in_ray.reset(seed=3), sync.reset(seed=3))
        ended = 0
        for action in np.random.default_rng(0).integers(0, 2, (200, num_envs)):
            want, got = sync.step(action), in_ray.step(action)
            for x, y in zip(want, got, strict=True):
                np.testing.assert_array_equal(y, x)
                assert y.dtype == x.dtype
            ended += want[2].any() + want[3].any()
        assert ended > 0
        assert in_ray.get_state() is None  # Not checkpointed: a resume starts new episodes.
        busy = in_ray.worker_seconds()
        assert busy.shape == (2,) and np.all(busy > 0)
        assert np.all(in_ray.worker_seconds() == 0)  # Read once per interval.
    finally:
        sync.close()
        in_ray.close()
    assert ray.is_initialized()  # It joined the module's Ray, so it leaves it running.


def test_a_dead_worker_is_made_afresh_and_every_env_reset(two_nodes):
    vec = RayVecEnv(SHORT, 4, CARTPOLE, workers=2)
    sync = envs.host_vec_env(SHORT, 4, CARTPOLE, "sync")
    try:
        vec.reset(seed=0)
        for _ in range(3):
            vec.step(np.zeros(4, np.int64))
        steps = vec.steps
        pid = ray.get(vec.workers[1].__ray_call__.remote(lambda worker: os.getpid()))
        os.kill(pid, 9)  # Its process dies, as in a crash or the OOM killer.
        with pytest.raises(EnvsRestarted, match=r"Ray env worker 1 \(envs 2 to 3\) died"):
            vec.step(np.zeros(4, np.int64))
        assert vec.restarts == 1 and vec.steps == steps  # The step did not happen.
        # Every env starts a new episode, seeded apart from the first ones.
        np.testing.assert_array_equal(vec.obs, sync.reset(seed=0 + 4 * 1))
        assert not np.any(vec.episode_length)
        kill(vec.workers[0])  # Killed through Ray.
        with pytest.raises(EnvsRestarted, match="2 worker restart"):
            vec.step(np.zeros(4, np.int64))
        for _ in range(3):
            assert vec.step(np.ones(4, np.int64))[0].shape == (4, 4)
    finally:
        vec.close()
        sync.close()


def test_too_many_workers_is_a_clear_error(two_nodes, monkeypatch):
    from purerl.envs import ray_env

    with pytest.raises(ValueError, match="--env-workers must be between 1 and --num-envs"):
        RayVecEnv(SHORT, 2, CARTPOLE, workers=3)
    monkeypatch.setattr(ray_env, "START_SECONDS", 2.0)
    with pytest.raises(ValueError, match=r"3 Ray env workers did not all start within 2 s: each"):
        RayVecEnv(SHORT, 4, CARTPOLE, workers=3)  # The cluster has 2 CPUs.
    for _ in range(100):  # None left holding a CPU or waiting for one.
        if ray.available_resources().get("CPU") == 2:
            break
        time.sleep(0.1)
    assert ray.available_resources().get("CPU") == 2


def test_the_throughput_benchmark_prints_its_table(capsys):
    from purerl.experiments import benchmark_ray

    argv = ["--modes", "sync", "ray-actors", "--rounds", "1", "--steps", "2"]
    benchmark_ray.main(["--cases", "sleepy", *argv])
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[:4] == ["case", "envs", "sync", "ray-actors"]
    assert rows[2].startswith("CartPole-v1 + 2 ms sleep (ray: 8 workers)")
    assert rows[2].split()[-2:] == ["1.0x", "-"]  # Env stepping alone: no agent to act.
    # A training run, in a fresh process, of the sleepy env made by its name.
    argv = ["--modes", "sync", "--rounds", "1", "--train-steps", "1024"]
    benchmark_ray.main(["--cases", "train-sleepy", *argv])
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].startswith("PPO, CartPole + 2 ms sleep (ray: 8 workers)")
    assert rows[2].split()[-1] == "1.0x" and float(rows[2].split()[-2].replace(",", "")) > 0


@pytest.mark.parametrize(
    "agent, extra",
    [
        ("ppo", ["--total-timesteps", "4096"]),
        ("dqn", ["--total-timesteps", "3000", "--learning-starts", "500"]),
    ],
)
def test_training_with_ray_envs_gives_the_sync_run(two_nodes, tmp_path, agent, extra):
    script = importlib.import_module(f"purerl.experiments.{agent}")
    args = ["--env", CARTPOLE, "--num-devices", "1", "--num-logs", "2", "--quiet", *extra]
    script.main([*args, "--run-dir", str(tmp_path / "sync")])
    script.main(
        [*args, "--run-dir", str(tmp_path / "ray"), "--host-envs", "ray", "--env-workers", "2"]
    )
    sync = (tmp_path / "sync" / "policy.msgpack").read_bytes()
    assert (tmp_path / "ray" / "policy.msgpack").read_bytes() == sync
    # One worker that acts (--actors-on-workers) acts with the actor thread's keys on the
    # same batch: the same run too. (Two or more act their slices with keys of their own.)
    on_workers = ["--host-envs", "ray", "--env-workers", "1", "--actors-on-workers"]
    script.main([*args, "--run-dir", str(tmp_path / "acting"), *on_workers])
    assert (tmp_path / "acting" / "policy.msgpack").read_bytes() == sync
    with open(tmp_path / "ray" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # Where each interval's time went, and no restarts.
        assert float(row["worker_restarts"]) == 0
        times = ("act", "env", "env_worker_busy_max", "env_worker_busy_mean", "actor_wait")
        fractions = [float(row[f"{name}_fraction"]) for name in times]
        assert all(0 < f < 1 for f in fractions[:4]), row
        assert fractions[2] >= fractions[3]  # The busiest worker, and the mean.


@pytest.mark.parametrize(
    "agent, extra",
    [
        ("ppo", ["--env", CARTPOLE, "--total-timesteps", "4096"]),
        # Off-policy, continuous actions, random ones in the warm-up: acted in the workers.
        (
            "sac",
            ["--env", "gymnasium:Pendulum-v1", "--num-envs", "2", "--total-timesteps", "1024"],
        ),
    ],
)
def test_two_acting_workers_train(two_nodes, tmp_path, agent, extra):
    script = importlib.import_module(f"purerl.experiments.{agent}")
    args = ["--num-devices", "1", "--num-logs", "2", "--quiet", *extra]
    args += ["--host-envs", "ray", "--env-workers", "2", "--actors-on-workers"]
    if agent == "sac":
        args += ["--learning-starts", "256", "--batch-size", "64"]
    summary = script.main([*args, "--run-dir", str(tmp_path)])
    assert summary["total_timesteps"] == int(extra[extra.index("--total-timesteps") + 1])
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # The workers' seconds acting and stepping, read back with the rollouts.
        assert all(0 < float(row[f"{name}_fraction"]) < 1 for name in ("act", "env")), row
        assert float(row["env_worker_busy_max_fraction"]) > 0
        assert float(row["episodes"]) > 0 and np.isfinite(float(row["episode_return"]))


def test_a_recurrent_agent_acting_in_a_worker_gives_the_sync_run(two_nodes, tmp_path):
    # An LSTM's carry goes to the worker with each rollout's position and comes back with its
    # slice: one acting worker carries it over rollouts (and intervals) as the thread does.
    from purerl.experiments import ppo

    args = ["--env", CARTPOLE, "--torso", "lstm", "--num-envs", "4", "--num-steps", "32"]
    args += ["--num-minibatches", "2", "--total-timesteps", "512", "--num-logs", "2"]
    args += ["--num-devices", "1", "--quiet"]
    ppo.main([*args, "--run-dir", str(tmp_path / "sync")])
    on_worker = ["--host-envs", "ray", "--env-workers", "1", "--actors-on-workers"]
    ppo.main([*args, "--run-dir", str(tmp_path / "acting"), *on_worker])
    sync = (tmp_path / "sync" / "policy.msgpack").read_bytes()
    assert (tmp_path / "acting" / "policy.msgpack").read_bytes() == sync


def test_actors_on_workers_need_ray_envs_and_keep_no_reward_statistics():
    from purerl.experiments.engine.config import RunConfig

    with pytest.raises(ValueError, match="--actors-on-workers .* needs --host-envs ray"):
        RunConfig(env=CARTPOLE, actors_on_workers=True)
    with pytest.raises(ValueError, match="does not support --normalize-rewards"):
        RunConfig(env=CARTPOLE, host_envs="ray", actors_on_workers=True, normalize_rewards=True)


def ppo_ray_loop(actors_on_workers: bool):
    """The host loop of a small PPO on 4 CartPole envs in 2 Ray workers, built, not started."""
    from purerl.agents import registry
    from purerl.experiments.engine.build import build_loop
    from purerl.experiments.engine.config import RunConfig

    entry = registry.get("ppo")
    config = entry.config_class()(num_envs=4, num_steps=16, num_minibatches=2)
    run = RunConfig(
        env=CARTPOLE, host_envs="ray", num_devices=1, actors_on_workers=actors_on_workers
    )
    return build_loop(run, lambda c: entry.recipe(config, c)).loop


@pytest.mark.parametrize("on_workers", [False, True], ids=["thread acts", "workers act"])
def test_the_rollout_in_flight_is_dropped_whole_when_a_worker_dies(
    two_nodes, monkeypatch, on_workers
):
    loop = ppo_ray_loop(on_workers)
    vec = loop.env
    step_envs, call = vec._step_envs, vec.call

    def kill_at_step_5(action):
        if vec.steps == 5 and vec.restarts == 0:
            kill(vec.workers[1])
        return step_envs(action)

    def kill_in_rollout(method, args):  # The workers collect a rollout in one call.
        if method == "rollout" and vec.restarts == 0:
            kill(vec.workers[1])
        return call(method, args)

    if on_workers:
        monkeypatch.setattr(vec, "call", kill_in_rollout)
    else:
        monkeypatch.setattr(vec, "_step_envs", kill_at_step_5)
    sync = envs.host_vec_env(envs.resolve(CARTPOLE)[1], 4, CARTPOLE, "sync")
    try:
        runner = loop.init()
        state = loop._to_actor(runner.learner)
        position = (runner.actor_key, runner.actor_carry, runner.actor_done, runner.actor_steps)
        (trajectory, _), _ = loop._collect(state, position, threading.Event())
        # The rollout starts at the new episodes: none of the steps before the death.
        np.testing.assert_array_equal(trajectory.obs[0, 0, 0], sync.reset(seed=0 + 4 * 1))
        assert trajectory.obs.shape[2] == 16 and vec.restarts == 1
        assert on_workers or vec.steps == 5 + 16

        def lost_every_time(*args):
            raise EnvsRestarted("Ray env worker 0 (envs 0 to 1) died")

        monkeypatch.setattr(vec, "call" if on_workers else "_step_envs", lost_every_time)
        with pytest.raises(HostEnvError, match="lost and made afresh 4 times in one rollout"):
            loop._collect(state, position, threading.Event())
    finally:
        loop.close()
        sync.close()


def test_a_worker_lost_while_compiling_its_act_is_made_afresh_and_acts(
    two_nodes, monkeypatch, capsys
):
    loop = ppo_ray_loop(actors_on_workers=True)
    vec = loop.env
    call = vec.call

    def kill_in_warm_up(method, args):  # At the start, as the workers compile `act`.
        if method == "warm_up":
            kill(vec.workers[1])
        return call(method, args)

    monkeypatch.setattr(vec, "call", kill_in_warm_up)
    try:
        runner = loop.init()
        assert vec.restarts == 1
        assert "warning: Ray env worker 1 (envs 2 to 3) died" in capsys.readouterr().err
        state = loop._to_actor(runner.learner)
        position = (runner.actor_key, runner.actor_carry, runner.actor_done, runner.actor_steps)
        (trajectory, _), _ = loop._collect(state, position, threading.Event())
        assert trajectory.obs.shape[2] == 16 and vec.restarts == 1  # The new one compiled.
    finally:
        loop.close()


def test_a_run_goes_on_when_a_worker_is_killed_logs_it_and_resumes(
    two_nodes, tmp_path, monkeypatch, capsys
):
    import socket

    from purerl.experiments import ppo

    step_envs = RayVecEnv._step_envs

    def kill_once(self, action):  # Worker 1 is killed mid-rollout, in the 2nd interval.
        if self.steps == 300 and self.restarts == 0:
            kill(self.workers[1])
        return step_envs(self, action)

    monkeypatch.setattr(RayVecEnv, "_step_envs", kill_once)
    args = ["--env", CARTPOLE, "--num-devices", "1", "--num-logs", "2", "--host-envs", "ray"]
    summary = ppo.main([*args, "--total-timesteps", "4096", "--run-dir", str(tmp_path)])
    assert summary["total_timesteps"] == 4096 and np.isfinite(summary["final_return"]).all()
    out, err = capsys.readouterr()
    # The startup line says where the workers run: one on each node (of this machine).
    assert "8 envs in 2 Ray workers (Ray at " in out and f"1 on {socket.gethostname()} (" in out
    dropped = [line for line in err.splitlines() if "the rollout in flight was dropped" in line]
    assert len(dropped) == 1 and "Ray env worker 1 (envs 4 to 7) died" in dropped[0]
    # Resumed and extended: the learner as saved, the envs made afresh, and said so.
    summary = ppo.main(["--resume", str(tmp_path), "--total-timesteps", "6144", "--quiet"])
    out, err = capsys.readouterr()
    assert "starts new episodes" in out + err and summary["total_timesteps"] == 6144
    with open(tmp_path / "metrics.csv") as f:
        restarts = [float(row["worker_restarts"]) for row in csv.DictReader(f)]
    assert restarts == [0, 1, 1]  # Cumulative over the run, --resume included.


def test_an_env_that_raises_stops_the_run_naming_it_and_the_step(two_nodes, tmp_path):
    from purerl.experiments import ppo

    argv = ["--env", EXPLODING, "--host-envs", "ray", "--num-envs", "4", "--num-steps", "16"]
    argv += ["--num-minibatches", "2", "--total-timesteps", "1600", "--num-logs", "5"]
    argv += ["--checkpoint-every", "320", "--num-devices", "1", "--quiet"]
    # Each worker's process explodes at its env step 600: vector step 300, interval 3.
    message = (
        rf"{EXPLODING} raised in step 299 of the host loop .*in Ray env worker 0 \(envs 0 to 1, "
        r"on .*the simulator crashed.*The last checkpoint in .* is intact: fix the environment "
        rf"and continue with --resume {tmp_path}"
    )
    with pytest.raises(HostEnvError, match=message):
        ppo.main([*argv, "--run-dir", str(tmp_path)])
    assert not (tmp_path / "summary.json").exists()
    assert (tmp_path / "checkpoints").is_dir()


def test_a_lost_node_with_no_room_left_stops_the_run_saying_what_to_check(two_nodes, monkeypatch):
    from purerl.envs import ray_env

    vec = RayVecEnv(SHORT, 4, CARTPOLE, workers=2)
    monkeypatch.setattr(ray_env, "START_SECONDS", 3.0)
    second = next(iter(two_nodes.worker_nodes))
    try:
        vec.reset(seed=0)
        lost = [w for w, node in enumerate(vec.nodes) if node[0] == second.node_id]
        assert len(lost) == 1
        two_nodes.remove_node(second)  # Its worker dies; the other node's CPU is taken.
        message = (
            rf"Ray env worker {lost[0]} died and the worker made in its place did not start "
            r"within 3 s: each asks Ray for one CPU: has the cluster that many free\? `ray status`"
        )
        with pytest.raises(HostEnvError, match=message):
            vec.step(np.zeros(4, np.int64))
    finally:
        vec.close()
        with warnings.catch_warnings():  # Two nodes again, for any test after this one.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            two_nodes.add_node(num_cpus=1)
