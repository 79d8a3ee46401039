"""The comparison scripts of benchmarks/peers build their purerl side without any peer
installed: `--dry-run` parses the purerl flags each comparison uses through purerl's own
command line (a renamed or mis-set option fails here, not in a benchmark run)."""

import pathlib
import runpy
import sys

import pytest

PEERS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
CASES = [
    ("rejax_compare.py", "ppo"),
    ("rejax_compare.py", "ppo-defaults"),
    ("rejax_compare.py", "ppo-warm"),
    ("rejax_compare.py", "dqn"),
    ("rejax_compare.py", "sac"),
    ("rejax_compare.py", "td3"),
    ("sbx_compare.py", "ppo"),
    ("sbx_compare.py", "sac"),
    ("purejaxrl_compare.py", "ppo"),
    ("purejaxrl_compare.py", "dqn"),
    ("vecenv_compare.py", "cartpole-8"),
    ("flashbax_compare.py", "cartpole"),
]


@pytest.fixture
def script_main(monkeypatch):
    """`main` of a script in benchmarks/peers, loaded as its own folder's script would be."""
    monkeypatch.syspath_prepend(str(PEERS))
    monkeypatch.delitem(sys.modules, "common", raising=False)
    return lambda name: runpy.run_path(str(PEERS / name))["main"]


@pytest.mark.parametrize("script, case", CASES)
def test_dry_run_resolves_the_purerl_side(script_main, capsys, script, case):
    script_main(script)([case, "--dry-run"])
    out = capsys.readouterr().out
    assert "purerl resolves to:" in out or "purerl side builds:" in out, out


def test_a_wrong_purerl_flag_fails_the_dry_run(script_main, monkeypatch, capsys):
    main = script_main("rejax_compare.py")
    monkeypatch.setitem(main.__globals__, "MLP_64", ("--hidden-sizes", "64", "--no-such-flag"))
    with pytest.raises(SystemExit):
        main(["ppo", "--dry-run"])
