"""`purerl suite`: pairs run as ordinary run directories, done pairs skipped, and a results
page that is made only from the runs it keeps (the check finds any number changed by hand)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from purerl.experiments import suite


def test_interval_is_a_student_t_interval() -> None:
    mean, half = suite.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    # t(0.975, 4) = 2.7764; the standard error is sqrt(2.5 / 5).
    assert half == pytest.approx(2.7764 * np.sqrt(2.5 / 5), rel=1e-4)
    assert suite.interval([7.0]) == (7.0, 0.0)
    assert suite.interval([np.nan, 2.0, 4.0])[0] == 3.0


def test_every_suite_names_registered_agents_and_known_envs() -> None:
    from purerl import envs
    from purerl.agents import registry

    assert len({p.agent for _, pairs in suite.SUITES.values() for p in pairs}) >= 10
    assert len({p.env for _, pairs in suite.SUITES.values() for p in pairs}) >= 12
    for _, pairs in suite.SUITES.values():
        for pair in pairs:
            assert pair.agent in registry.names()
            prefix = pair.env.partition(":")[0]
            module = {"craftax": "craftax.craftax_env", "playground": "mujoco_playground"}
            module_name = module.get(prefix, prefix)
            if prefix in envs.registry.SUITES and not importlib.util.find_spec(module_name):
                continue  # An optional suite that is not installed here.
            if prefix != "brax":
                envs.resolve(pair.env)  # Raises on an unknown id.


def test_anchors_name_their_source() -> None:
    anchors = yaml.safe_load(suite.ANCHORS.read_text())
    for item in anchors:
        assert {"agent", "env", "value", "source"} <= set(item), item
        assert float(item["value"]) == float(item["value"])  # A number, not NaN.


def test_state_of_a_run_directory(tmp_path: Path) -> None:
    argv = ["ppo", "--env", "CartPole-v1"]
    run_dir = tmp_path / "run"
    assert suite.state_of(run_dir, argv) == "fresh"
    run_dir.mkdir()
    assert suite.state_of(run_dir, argv) == "other"  # Not made by the suite: left alone.
    (run_dir / suite.SUITE_FILE).write_text(json.dumps({"argv": argv}))
    assert suite.state_of(run_dir, argv) == "fresh"  # Stopped before any checkpoint.
    assert suite.state_of(run_dir, [*argv, "--num-seeds", "3"]) == "other"
    (run_dir / "checkpoints" / "100").mkdir(parents=True)
    assert suite.state_of(run_dir, argv) == "partial"
    (run_dir / "summary.json").write_text("{}")
    assert suite.state_of(run_dir, argv) == "done"


def test_unknown_suite_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        suite.main(["clasic"])
    err = capsys.readouterr().err
    assert "did you mean 'classic'" in err and "minatar" in err


def test_suite_trains_writes_the_page_and_the_check_holds(tmp_path: Path) -> None:
    root, page = tmp_path / "runs", tmp_path / "docs" / "results.md"
    args = ["bsuite", "--only", "ppo", "--envs", "Catch-bsuite", "--scale", "0.02"]
    args += ["--seeds", "2", "--eval-episodes", "1", "--root", str(root), "--page", str(page)]
    assert suite.main(args) == 0
    text = page.read_text()
    assert "### Catch-bsuite" in text and "| `ppo` |" in text
    assert (page.parent / "results" / "Catch-bsuite.png").is_file()
    summary = json.loads((root / "bsuite" / "ppo--Catch-bsuite" / "summary.json").read_text())
    assert summary["num_seeds"] == 2
    assert suite._cell(summary["final_return"]) in text
    assert suite.check(page, page.parent / "results" / "runs") == []

    # A done pair is skipped: its run directory is not touched again.
    stamp = (root / "bsuite" / "ppo--Catch-bsuite" / "summary.json").stat().st_mtime_ns
    assert suite.main(args) == 0
    assert (root / "bsuite" / "ppo--Catch-bsuite" / "summary.json").stat().st_mtime_ns == stamp

    # A number edited by hand no longer matches the runs.
    row = next(line for line in text.splitlines() if line.startswith("| `ppo` |"))
    page.write_text(text.replace(row, row.replace("| 2e3 |", "| 9e9 |")))
    assert suite.main(["--check", "--page", str(page)]) == 1


def test_the_results_page_matches_the_runs_it_was_made_from() -> None:
    docs = Path(__file__).parents[2] / "docs"
    assert suite.check(docs / "results.md", docs / "results" / "runs") == []
