import json

import numpy as np
import pytest
from purerl.agents.ppo import PPOConfig
from purerl.experiments.cli import experiment_class, parse
from purerl.experiments.engine.sweep import Sweep, parse_sweep

optuna = pytest.importorskip("optuna")
from purerl.experiments import tune  # noqa: E402

SMALL = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "16", "--num-minibatches"]
SMALL += ["1", "--update-epochs", "1", "--total-timesteps", "2048", "--num-seeds", "1"]
SMALL += ["--num-devices", "1", "--num-logs", "2", "--quiet", "--no-plot"]
SEARCH = ["--search", "learning_rate=log:1e-4:1e-2", "gamma=0.9:0.999"]


def test_a_batch_of_points_reads_back_from_its_sweep_entries():
    points = [(1e-3, 0.99), (3.3e-4, 0.95)]
    sweep = Sweep.from_points(("learning_rate", "gamma"), points, PPOConfig())
    assert sweep.grid == tuple(points)  # The points as they are, not their grid.
    assert parse_sweep(sweep.entries(), PPOConfig()) == sweep
    assert sweep.values(2).shape == (4, 2)
    with pytest.raises(ValueError, match="one value of each option"):
        parse_sweep(("learning_rate:gamma=1e-3:0.9,1e-3",), PPOConfig())


def test_a_tune_stopped_after_one_batch_resumes_with_the_next(tmp_path):
    run_dir = tmp_path / "tune"
    tune.tune(["ppo", *SEARCH, "--trials", "2", "--batch", "2", "--run-dir", str(run_dir), *SMALL])
    assert (run_dir / "batch0" / "summary.json").exists() and not (run_dir / "batch1").exists()
    # A trial asked and never told (a kill -9 mid-batch) trains in the next batch.
    storage = f"sqlite:///{run_dir / 'study.db'}"
    study = optuna.load_study(study_name="ppo-CartPole-v1", storage=storage)
    asked = study.ask(
        {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    )
    asked.suggest_float("gamma", 0.9, 0.999)

    best = tune.tune(["--resume", str(run_dir), "--trials", "4"])

    study = optuna.load_study(study_name="ppo-CartPole-v1", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(study.trials) == 4 and len(trials) == 4
    assert json.loads((run_dir / "batch0" / "trials.json").read_text()) == [0, 1]
    assert json.loads((run_dir / "batch1" / "trials.json").read_text()) == [2, 3]
    assert study.trials[2].params == asked.params  # Its values were kept.
    for k in range(2):  # Each trial's value: its batch's mean final return over its seeds.
        summary = json.loads((run_dir / f"batch{k}" / "summary.json").read_text())
        for trial, row in zip(trials[2 * k : 2 * k + 2], summary["sweep_configs"], strict=True):
            assert trial.params == pytest.approx(row)
        values = [t.value for t in trials[2 * k : 2 * k + 2]]
        np.testing.assert_allclose(values, summary["final_return"])
    assert best["value"] == max(t.value for t in trials)

    args = parse(experiment_class("ppo"), ["--config", str(run_dir / "best.yaml")])
    assert args.run.env == "CartPole-v1" and args.agent.num_envs == 4
    assert args.agent.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert args.agent.gamma == pytest.approx(best["params"]["gamma"])


def test_only_float_options_can_be_searched(tmp_path):
    with pytest.raises(ValueError, match="only float options.*learning_rate"):
        tune.tune(["ppo", "--search", "num_envs=4:8", "--run-dir", str(tmp_path), *SMALL])
    with pytest.raises(ValueError, match="LOW > 0 in log space"):
        tune.tune(["ppo", "--search", "gamma=log:0:1", "--run-dir", str(tmp_path), *SMALL])
    assert not (tmp_path / "study.db").exists()
