"""Train C51 (categorical DQN): `python -m purerl.experiments.c51 --env ENV`; `--help` lists every
option."""

from purerl.experiments.cli import agent_script, cli_main

run, main = agent_script("c51")

if __name__ == "__main__":
    cli_main(main)
