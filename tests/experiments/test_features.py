"""Run features as the terminal shows them."""

import math

import pytest
from purerl.experiments.engine.features import Interval, ProgressFeature, StopRequest, format_return


def test_a_return_is_shown_with_two_decimals_or_a_dash_before_any_episode_ends():
    assert format_return(float("nan")) == "—"
    assert format_return(12.345) == "12.35"
    assert format_return(-0.5) == "-0.50"


def test_progress_lines_show_a_dash_not_nan_when_no_episode_has_ended(capsys):
    progress = ProgressFeature(total_steps=2_000, quiet=False, start_steps=0)  # Not a tty.
    row = {"steps_per_second": 1234.0, "episode_return": math.nan}
    progress.on_interval(Interval(0, 1_000, 0, False, None, row, None))
    progress.on_interval(
        Interval(1, 2_000, 1_000, True, None, {**row, "episode_return": 9.5}, None)
    )
    progress.close()
    first, second = capsys.readouterr().out.splitlines()
    assert first.endswith("return        —") and "nan" not in first
    assert second.endswith("return     9.50")


def test_a_stop_request_ends_the_run_with_a_message_that_follows_interrupted(tmp_path):
    for checkpointing, ending in (
        (True, f"; continue with --resume {tmp_path}"),
        (False, "; checkpoints were off, so it cannot be resumed"),
    ):
        stop = StopRequest(tmp_path, lambda c=checkpointing: c)
        stop.requested = True
        try:
            with pytest.raises(KeyboardInterrupt) as e:
                stop.on_interval(Interval(3, 4_096, 2_048, False, None, {}, None))
        finally:
            stop.close()
        assert f"interrupted: {e.value}" == f"interrupted: stopped after 4,096 steps{ending}"
