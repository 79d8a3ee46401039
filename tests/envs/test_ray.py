"""Host envs in Ray actors (`--host-envs ray`): they step as the sync envs do, PPO and DQN
train to the same parameters as with sync envs, and a cluster that is not there is refused
before the run starts. One local Ray (2 CPUs) serves the module."""

import numpy as np
import pytest
from purerl import envs
from purerl.envs.ray_env import RayVecEnv, connect, slices

ray = pytest.importorskip("ray")

CARTPOLE = "gymnasium:CartPole-v1"
# A short time limit, so the steps hold both terminations and truncations.
SHORT = envs.resolve(CARTPOLE, max_episode_steps=30)[1]


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
def local_ray():
    assert connect(None, num_cpus=2)  # The local Ray `--host-envs ray` starts.
    yield
    ray.shutdown()


def test_slices_are_fixed_and_cover_every_env_once():
    assert slices(5, 2) == [(0, 3), (3, 5)]
    assert slices(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert slices(2, 2) == [(0, 1), (1, 2)]


def test_ray_envs_step_as_the_sync_envs_do(local_ray):
    num_envs = 5  # Uneven slices: 3 and 2.
    sync = envs.host_vec_env(SHORT, num_envs, CARTPOLE, "sync")
    in_ray = envs.host_vec_env(SHORT, num_envs, CARTPOLE, "ray", workers=2)
    assert isinstance(in_ray, RayVecEnv) and in_ray.spec == sync.spec
    assert in_ray.where == "5 envs in 2 Ray workers (local Ray)"
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
    finally:
        sync.close()
        in_ray.close()
    assert ray.is_initialized()  # It joined the module's Ray, so it leaves it running.


def test_too_many_workers_is_a_clear_error(local_ray):
    with pytest.raises(ValueError, match="--env-workers must be between 1 and --num-envs"):
        RayVecEnv(SHORT, 2, CARTPOLE, workers=3)


@pytest.mark.parametrize(
    "agent, extra",
    [
        ("ppo", ["--total-timesteps", "4096"]),
        ("dqn", ["--total-timesteps", "3000", "--learning-starts", "500"]),
    ],
)
def test_training_with_ray_envs_gives_the_sync_run(local_ray, tmp_path, agent, extra):
    import importlib

    script = importlib.import_module(f"purerl.experiments.{agent}")
    args = ["--env", CARTPOLE, "--num-devices", "1", "--num-logs", "2", "--quiet", *extra]
    script.main([*args, "--run-dir", str(tmp_path / "sync")])
    script.main(
        [*args, "--run-dir", str(tmp_path / "ray"), "--host-envs", "ray", "--env-workers", "2"]
    )
    sync = (tmp_path / "sync" / "policy.msgpack").read_bytes()
    assert (tmp_path / "ray" / "policy.msgpack").read_bytes() == sync


def test_a_resumed_ray_run_restarts_the_workers_envs_and_says_so(local_ray, tmp_path, capsys):
    from purerl.experiments import ppo

    run_dir = str(tmp_path / "run")
    args = ["--env", CARTPOLE, "--num-devices", "1", "--quiet", "--host-envs", "ray"]
    ppo.main([*args, "--run-dir", run_dir, "--total-timesteps", "2048", "--num-logs", "1"])
    capsys.readouterr()
    summary = ppo.main(["--resume", run_dir, "--total-timesteps", "4096"])
    out = capsys.readouterr()
    assert "starts new episodes" in out.out + out.err
    assert summary["total_timesteps"] == 4096
