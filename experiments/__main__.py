"""`python -m purerl.experiments AGENT ...`: the `purerl` command (see `purerl.experiments.cli`)."""

from purerl.experiments.command import purerl_main

purerl_main()
