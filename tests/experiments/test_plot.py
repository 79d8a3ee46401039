import json
import subprocess
import sys

import numpy as np
import pytest
from purerl.experiments.engine.plot import read_returns, write_returns

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(path, num_seeds, offset=0.0):
    path.mkdir()
    steps = [1000, 2000, 3000]
    returns = np.arange(3 * num_seeds, dtype=float).reshape(3, num_seeds) + offset
    returns[0, 0] = np.nan  # No episode ended yet for that seed.
    write_returns(path / "returns.csv", steps, returns)
    (path / "summary.json").write_text(json.dumps({"agent": "ppo", "env": "CartPole-v1"}))
    return steps, returns


def test_returns_round_trip_with_missing_values(tmp_path):
    steps, returns = fake_run(tmp_path / "run", num_seeds=3)
    got_steps, got = read_returns(tmp_path / "run")
    np.testing.assert_array_equal(got_steps, steps)
    np.testing.assert_array_equal(got, returns)


def test_plot_command_writes_a_png_for_several_runs(tmp_path):
    fake_run(tmp_path / "a", num_seeds=3)
    fake_run(tmp_path / "b", num_seeds=1, offset=5.0)
    out = tmp_path / "curves.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "purerl.experiments.plot",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (450, 700)


def test_plot_of_a_directory_that_is_no_run_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "purerl.experiments.plot", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "has no returns.csv" in proc.stderr


def test_the_band_stays_within_the_seeds_range():
    from purerl.experiments.engine.plot import confidence_band

    returns = np.array([[500.0, 500.0, 500.0, 20.0], [10.0, 12.0, np.nan, 11.0]])
    mean, lower, upper = confidence_band(returns)
    np.testing.assert_allclose(mean, [380.0, 11.0])
    assert upper[0] == 500.0  # Mean + 1.96 SE would be about 615.
    assert lower[0] == pytest.approx(380.0 - 1.96 * np.std(returns[0], ddof=1) / 2)
    assert 10.0 <= lower[1] < 11.0 < upper[1] <= 12.0


def test_plot_help_reads_plainly(capsys):
    from purerl.experiments.engine.plot import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "mean and 95% band over seeds" in out
    assert "%%" not in out


def test_many_curves_put_the_legend_below_the_axes_and_never_repeat_a_style(tmp_path):
    import matplotlib.image
    from purerl.experiments.engine import plot as plot_module

    runs = []
    for i in range(12):
        fake_run(tmp_path / f"run{i}", num_seeds=2, offset=float(i))
        runs.append(tmp_path / f"run{i}")
    drawn = []
    original = plot_module._figure

    def recording_figure(width, height):
        fig = original(width, height)
        drawn.append(fig)
        return fig

    plot_module._figure = recording_figure
    try:
        out = plot_module.plot(runs, tmp_path / "many.png")
    finally:
        plot_module._figure = original
    # 12 legend lines below the axes: the figure grows 0.2 inch (20 px) a curve.
    assert matplotlib.image.imread(out).shape[:2] == (450 + 12 * 20, 700)
    (ax,) = drawn[0].axes
    styles = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()]
    assert len(styles) == 12 and len(set(styles)) == 12
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.y1 < ax.get_window_extent().y0  # Wholly below the axes.
