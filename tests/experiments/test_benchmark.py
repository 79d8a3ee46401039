"""`python -m purerl.experiments.benchmark --help` names the command, not a file, and says
each default once."""

import pytest
from purerl.experiments import benchmark


def test_help_names_the_module_and_says_each_default_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # One line per option.
    with pytest.raises(SystemExit) as e:
        benchmark.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m purerl.experiments.benchmark ")
    assert "Trains an agent and prints the summary's figures" in text
    devices = next(line for line in text.splitlines() if "--num-devices" in line)
    assert "devices to run on. (default: all local devices)" in devices
    assert "None" not in devices
    assert benchmark._return(None) == benchmark._return(float("nan")) == "—"
