"""A Q-learning agent for purerl, registered through the `purerl.agents` entry point."""
