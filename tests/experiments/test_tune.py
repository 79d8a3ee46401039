import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from purerl.agents.ppo import PPOConfig
from purerl.experiments.cli import experiment_class, parse
from purerl.experiments.engine.sweep import Sweep, parse_sweep

optuna = pytest.importorskip("optuna")
from purerl.experiments import tune  # noqa: E402
from purerl.experiments.tune import Range  # noqa: E402

# One tiny PPO program shape for most tests, so they share compiled programs.
SMALL = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "16", "--num-minibatches"]
SMALL += ["1", "--update-epochs", "1", "--total-timesteps", "2048", "--num-seeds", "1"]
SMALL += ["--num-devices", "1", "--num-logs", "2", "--quiet", "--no-plot"]
LR = ["--search", "learning_rate=log:1e-4:1e-2"]
STUDY = "ppo-CartPole-v1"
States = optuna.trial.TrialState


def load(run_dir):
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_dir / 'study.db'}")


def numbers(study, state):
    return [t.number for t in study.get_trials(states=(state,))]


def test_a_batch_of_points_reads_back_from_its_sweep_entries():
    points = [(1e-3, 0.99), (3.3e-4, 0.95)]
    sweep = Sweep.from_points(("learning_rate", "gamma"), points, PPOConfig())
    assert sweep.grid == tuple(points)  # The points as they are, not their grid.
    assert parse_sweep(sweep.entries(), PPOConfig()) == sweep
    assert sweep.values(2).shape == (4, 2)
    with pytest.raises(ValueError, match="one value of each option"):
        parse_sweep(("learning_rate:gamma=1e-3:0.9,1e-3",), PPOConfig())


def test_float_and_integer_ranges_from_the_command_line_and_a_yaml_file(tmp_path):
    entries = ["learning_rate=log:1e-5:1e-2", "gamma=0.9:0.999", "update_epochs=int:2:8"]
    entries += ["num_minibatches=1:4"]  # An integer option is searched as integers anyway.
    ranges = tune.parse_search(entries, PPOConfig())
    assert ranges == [
        Range("learning_rate", 1e-5, 1e-2, log=True, integer=False),
        Range("gamma", 0.9, 0.999, log=False, integer=False),
        Range("update_epochs", 2, 8, log=False, integer=True),
        Range("num_minibatches", 1, 4, log=False, integer=True),
    ]
    assert tune.parse_search([r.entry() for r in ranges], PPOConfig()) == ranges  # --resume
    assert isinstance(ranges[2].distribution(), optuna.distributions.IntDistribution)

    path = tmp_path / "search.yaml"
    path.write_text(
        'learning_rate: "log:1e-5:1e-2"\ngamma: {low: 0.9, high: 0.999}\n'
        "update_epochs: {low: 2, high: 8}\nnum_minibatches: int:1:4\n"
    )
    assert tune.parse_search(tune.read_search_file(str(path)), PPOConfig()) == ranges
    path.write_text("update_epochs: 2:8\n")  # YAML 1.1 reads this as the number 128.
    with pytest.raises(ValueError, match="quote it"):
        tune.read_search_file(str(path))


def test_options_without_a_numeric_range_are_refused_with_what_can_be_searched(tmp_path):
    def refused(entry, match):
        with pytest.raises(ValueError, match=match):
            tune.tune(["ppo", "--search", entry, "--run-dir", str(tmp_path), *SMALL])

    refused("hidden_sizes=8:64", "tuple.*structural.*Integer options .varied between batches.")
    refused("num_envs=4:8x", "NAME=int:LOW:HIGH")
    refused("gamma=int:0:1", "gamma is a float option")
    refused("update_epochs=1.5:4", "integer option; give integers")
    refused("gamma=log:0:1", "LOW > 0 in log space")
    refused("nope=1:2", "not an option of PPOConfig.*Float options .varied within a batch.")
    with pytest.raises(ValueError, match="--pruner 'mean'"):
        tune.tune(["ppo", *LR, "--pruner", "mean", "--run-dir", str(tmp_path), *SMALL])
    assert not (tmp_path / "study.db").exists()


def test_a_batch_shares_its_integer_options_and_best_yaml_loads_through_config(tmp_path):
    run_dir = tmp_path / "tune"
    search = tmp_path / "search.yaml"
    search.write_text('learning_rate: "log:1e-4:1e-2"\nupdate_epochs: "int:1:2"\n')
    flags = ["--search-file", str(search), "--trials", "4", "--batch", "2", *SMALL]
    best = tune.tune(["ppo", *flags, "--run-dir", str(run_dir)])

    study = load(run_dir)
    assert len(numbers(study, States.COMPLETE)) == 4
    for k in range(2):  # Each batch: two trials with one update_epochs, as it trained.
        batch = json.loads((run_dir / f"batch{k}" / "trials.json").read_text())
        epochs = {study.trials[n].params["update_epochs"] for n in batch}
        config = json.loads((run_dir / f"batch{k}" / "config.json").read_text())
        assert len(batch) == 2 and epochs == {config["agent_config"]["update_epochs"]}
        assert all(np.isfinite(study.trials[n].value) for n in batch)
    assert best["value"] == max(t.value for t in study.trials)

    # `purerl ppo --config best.yaml` reads it as it reads any config file.
    args = parse(experiment_class("ppo"), ["--config", str(run_dir / "best.yaml")])
    assert args.run.env == "CartPole-v1" and args.agent.num_envs == 4
    assert args.agent.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert args.agent.update_epochs == best["params"]["update_epochs"]


PRUNE = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "32", "--num-minibatches"]
PRUNE += ["2", "--update-epochs", "2", "--total-timesteps", "24576", "--num-seeds", "2"]
PRUNE += ["--num-devices", "1", "--num-logs", "6", "--quiet", "--no-plot"]


def tune_with(run_dir, rates, trials, pruner="threshold:40"):
    """A tune of PPO's learning rate whose first trials are `rates`, queued with Optuna's own
    API before the start (they are asked first), two trials at a time; its study."""
    run_dir.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{run_dir / 'study.db'}", study_name=STUDY, direction="maximize"
    )
    for rate in rates:
        study.enqueue_trial({"learning_rate": rate})
    search = ["--search", "learning_rate=log:1e-8:1e-2", "--trials", str(trials)]
    tune.tune(["ppo", *search, "--batch", "2", "--pruner", pruner, "--prune-warmup", "3",
               *PRUNE, "--run-dir", str(run_dir)])  # fmt: skip
    return load(run_dir)


def test_the_pruner_masks_out_a_hopeless_trial_and_a_batch_of_them_stops(tmp_path):
    # A learning rate of 1e-8 leaves the policy at its random start (returns near 22); 3e-3
    # learns well past 40 by the fourth of six intervals on every seed.
    study = tune_with(tmp_path / "a", [3e-3, 1e-8], 2)
    assert numbers(study, States.COMPLETE) == [0] and numbers(study, States.PRUNED) == [1]
    hopeless = study.trials[1]
    assert min(hopeless.intermediate_values) == 1 and max(hopeless.intermediate_values) == 3
    assert max(hopeless.intermediate_values.values()) < 40
    assert study.trials[0].value > 40 and len(study.trials[0].intermediate_values) == 6

    # With every trial of the batch pruned, the batch stops at once.
    with pytest.raises(ValueError, match="no trial of .* finished with a return"):
        tune_with(tmp_path / "b", [3e-3, 1e-8], 2, pruner="threshold:1e9")
    study = load(tmp_path / "b")
    assert numbers(study, States.PRUNED) == [0, 1]
    assert all(max(t.intermediate_values) == 3 for t in study.trials)


def test_a_pruned_trials_lanes_train_the_next_trial_from_a_fresh_start(tmp_path):
    # 1e-8 is pruned after interval 3 of 6; 2e-3 takes its lanes in the running program.
    study = tune_with(tmp_path / "a", [3e-3, 1e-8, 2e-3], 3)
    assert numbers(study, States.COMPLETE) == [0, 2] and numbers(study, States.PRUNED) == [1]
    assert json.loads((tmp_path / "a" / "batch0" / "trials.json").read_text()) == [0, 1, 2]
    assert not (tmp_path / "a" / "batch1").exists()  # One batch, one compile.
    late = study.trials[2]
    assert sorted(late.intermediate_values) == [1, 2, 3, 4, 5, 6]  # Its own six intervals.

    # It trained as it would have from the batch's start: fresh runs, its own rate.
    alone = tune_with(tmp_path / "b", [2e-3, 3e-3], 2).trials[0]
    np.testing.assert_allclose(
        list(late.intermediate_values.values()), list(alone.intermediate_values.values()),
        rtol=1e-4,
    )  # fmt: skip
    assert late.value == pytest.approx(alone.value, rel=1e-4)


def test_a_tune_killed_mid_batch_resumes_keeping_its_finished_trials(tmp_path):
    run_dir = tmp_path / "tune"
    # Long enough intervals that trials 2 and 3, which take the lanes of 0 and 1, are still
    # training when the test sees them start.
    argv = ["ppo", *LR, "--trials", "4", "--batch", "2", "--run-dir", str(run_dir), *SMALL]
    argv += ["--total-timesteps", "65536"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "purerl.experiments.tune", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started = run_dir / "batch0" / "trials.json"
    try:
        deadline = time.monotonic() + 120
        while not started.exists() or len(json.loads(started.read_text() or "[]")) < 4:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "trials 2 and 3 never started"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)  # Mid-batch: trials 2 and 3 have only just started.
    finally:
        child.kill()
        child.wait()
    study = load(run_dir)
    assert numbers(study, States.COMPLETE) == [0, 1]
    assert numbers(study, States.RUNNING) == [2, 3]
    before = {n: study.trials[n].value for n in (0, 1)}

    best = tune.tune(["--resume", str(run_dir)])

    study = load(run_dir)
    assert numbers(study, States.FAIL) == [2, 3]  # In flight when killed: asked again.
    assert numbers(study, States.COMPLETE) == [0, 1, 4, 5]
    assert {n: study.trials[n].value for n in (0, 1)} == before
    for old, new in ((2, 4), (3, 5)):
        assert study.trials[new].params == study.trials[old].params
        assert study.trials[new].user_attrs == {tune.RETRY_OF: old}
    assert json.loads((run_dir / "batch1" / "trials.json").read_text()) == [4, 5]
    assert best["value"] == max(t.value for t in study.get_trials(states=(States.COMPLETE,)))
    with pytest.raises(ValueError, match="give only --trials or --batch"):
        tune.tune(["--resume", str(run_dir), "--pruner", "none"])


def test_a_trial_whose_loss_diverges_fails_and_leaves_its_lanes(tmp_path):
    from purerl.core import EpisodeStats
    from purerl.experiments.engine.loop import IntervalOutput

    study = optuna.create_study(direction="maximize")
    ranges = tune.parse_search(["learning_rate=log:1e-4:1e-2"], PPOConfig())
    tuner = tune._Tuner(study, None, None, PPOConfig(), ranges, tmp_path)
    slots = [tune._Slot(study.ask(tuner.distributions)) for _ in range(2)]
    # One update, two trials of two seeds each: the first trial's second seed diverged.
    episodes = EpisodeStats(*(np.full((1, 4), x) for x in (60.0, 30.0, 2.0)))
    output = IntervalOutput({"loss": np.array([[1.0, np.nan, 1.0, 1.0]])}, episodes)
    ended = [tuner._interval(s, output, slice(2 * c, 2 * c + 2), 6) for c, s in enumerate(slots)]
    assert ended == [True, False]
    diverged, training = study.trials
    assert diverged.state == States.FAIL and diverged.user_attrs == {"diverged_in_interval": 1}
    assert training.state == States.RUNNING and training.intermediate_values == {1: 30.0}
