"""Train QR-DQN (quantile regression DQN): `python -m purerl.experiments.qrdqn --env ENV`;
`--help` lists every option."""

from purerl.experiments.cli import agent_script, cli_main

run, main = agent_script("qrdqn")

if __name__ == "__main__":
    cli_main(main)
