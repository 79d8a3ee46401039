"""Train Rainbow, every DQN extension at once: `python -m purerl.experiments.rainbow --env ENV`;
switch any off (`--no-noisy`, `--n-step 1`, `--no-prioritized`, ...); `--help` lists every
option."""

from purerl.experiments.cli import agent_script, cli_main

run, main = agent_script("rainbow")

if __name__ == "__main__":
    cli_main(main)
