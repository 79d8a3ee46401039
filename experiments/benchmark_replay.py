"""Prioritised replay throughput: add, sample + priority update, and the two in turn (a
learning step of the device loop), at a given capacity and batch size, for CartPole-sized
and Atari-sized (84x84x4 uint8) transitions.

    python -m purerl.experiments.benchmark_replay                       # purerl's buffer
    /path/to/flashbax-venv/bin/python experiments/benchmark_replay.py --backend flashbax

The flashbax backend drives flashbax's own `make_prioritised_flat_buffer` (install flashbax
in a separate environment); this file imports purerl only for the purerl backend, so the
same script times both. Each cell prints microseconds per call: the median of `--repeats`
timed blocks of `--calls` calls, after a warm-up. By default a block is one compiled
`lax.scan` of the calls, as the device loop runs them; `--mode call` times one jitted call
each instead, which adds Python's dispatch (tens of microseconds on a CPU) to every cell.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

ITEMS = {
    # name: (observation shape, dtype)
    "cartpole": ((4,), jnp.float32),
    "atari": ((84, 84, 4), jnp.uint8),
}


def transition(obs_shape: tuple[int, ...], dtype: jnp.dtype, lead: tuple[int, ...]) -> dict:
    """One env step's fields. flashbax's flat buffer stores them as they are and pairs each
    with the following step's (its `first` and `second`), so each observation is stored
    once; purerl stores them as a `Transition`, each observation once too (replay.storage)."""
    return {
        "obs": jnp.zeros(lead + obs_shape, dtype),
        "action": jnp.zeros(lead, jnp.int32),
        "reward": jnp.zeros(lead, jnp.float32),
        "terminated": jnp.zeros(lead, bool),
        "truncated": jnp.zeros(lead, bool),
    }


def purerl_fns(capacity: int, batch: int, add_size: int, item: dict):
    from purerl.core import PRIORITIES, Transition
    from purerl.replay import prioritized_replay

    def as_transition(x: dict) -> Transition:
        return Transition(**x, next_obs=x["obs"], extras={})

    buffer = prioritized_replay(capacity, batch, alpha=0.6)
    item = as_transition(item)
    example = jax.tree.map(lambda x: jnp.zeros((1, add_size) + x.shape, x.dtype), item)
    state = buffer.init(example)

    def sample_update(state, key):
        sample = buffer.sample(state, key)
        priorities = jax.random.uniform(key, (batch,))
        return buffer.update(state, sample, {PRIORITIES: priorities}), sample.items.reward

    def adds(state, items):  # A rollout [T = 1, B = add_size].
        return buffer.add(state, jax.tree.map(lambda x: x[None], as_transition(items)))

    from purerl.replay.storage import bytes_per_slot

    print(f"  purerl bytes per stored transition: {bytes_per_slot(state.storage):,.1f}")
    return state, adds, sample_update


def flashbax_fns(capacity: int, batch: int, add_size: int, item: dict):
    import flashbax as fbx

    buffer = fbx.make_prioritised_flat_buffer(
        max_length=capacity,
        min_length=batch,
        sample_batch_size=batch,
        add_batch_size=add_size,
        priority_exponent=0.6,
    )
    state = buffer.init(item)
    experience = state.experience
    size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(experience))
    print(f"  flashbax bytes per stored transition: {size / capacity:,.1f}")

    def sample_update(state, key):
        sample = buffer.sample(state, key)
        priorities = jax.random.uniform(key, (batch,))
        return buffer.set_priorities(state, sample.indices, priorities), sample.experience.first[
            "reward"
        ]

    return state, buffer.add, sample_update


def bench(
    backend: str,
    capacity: int,
    batch: int,
    add_size: int,
    item_name: str,
    calls: int,
    repeats: int,
    mode: str = "scan",
) -> tuple[float, float, float]:
    shape, dtype = ITEMS[item_name]
    item = transition(shape, dtype, ())
    make = purerl_fns if backend == "purerl" else flashbax_fns
    state, add_fn, sample_update_fn = make(capacity, batch, add_size, item)
    items = transition(shape, dtype, (add_size,))
    add = jax.jit(add_fn, donate_argnums=0)
    sample_update = jax.jit(lambda state, key: sample_update_fn(state, key)[0], donate_argnums=0)
    # Fill past the sampling threshold first (and compile both functions).
    for _ in range(max(1, -(-2 * batch // add_size))):
        state = add(state, items)
    state = sample_update(state, jax.random.PRNGKey(0))
    jax.block_until_ready(state)

    def in_scan(step):
        """`calls` steps in one compiled `lax.scan`, as the device loop runs them."""

        def run(state, keys):
            return jax.lax.scan(lambda s, k: (step(s, k), None), state, keys)[0]

        return jax.jit(run, donate_argnums=0)

    def timed(step) -> float:
        nonlocal state
        scanned = in_scan(step) if mode == "scan" else None
        keys = jax.random.split(jax.random.PRNGKey(1), (repeats + 1, calls))
        # Compile outside the timing (a state whose types the last call changed compiles again).
        state = scanned(state, keys[-1]) if scanned is not None else step(state, keys[-1, 0])
        jax.block_until_ready(state)
        # One key array per call, sliced before the timing (slicing is a dispatch of its own).
        per_call = [list(block) for block in keys] if scanned is None else None
        times = []
        for r in range(repeats):
            start = time.perf_counter()
            if scanned is not None:
                state = scanned(state, keys[r])
            else:
                for key in per_call[r]:
                    state = step(state, key)
            jax.block_until_ready(state)
            times.append((time.perf_counter() - start) / calls * 1e6)
        return statistics.median(times)

    if mode == "scan":
        add_us = timed(lambda s, k: add_fn(s, items))
        sample_us = timed(lambda s, k: sample_update_fn(s, k)[0])
        # A learning step of the device loop: store a rollout, then sample and update.
        step_us = timed(lambda s, k: sample_update_fn(add_fn(s, items), k)[0])
        return add_us, sample_us, step_us
    add_us = timed(lambda s, k: add(s, items))
    return add_us, timed(sample_update), timed(lambda s, k: sample_update(add(s, items), k))


def positive(text: str) -> int:
    """An argparse type: a positive integer, or a clear error naming the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend",
        choices=("purerl", "flashbax"),
        default="purerl",
        help="whose buffer to time (flashbax: run this file with flashbax installed)",
    )
    parser.add_argument(
        "--capacities",
        type=positive,
        nargs="+",
        default=[100_000, 1_000_000],
        help="buffer capacities in transitions, one row each (default 1e5 1e6)",
    )
    parser.add_argument(
        "--items",
        nargs="+",
        default=list(ITEMS),
        choices=list(ITEMS),
        help="transition kinds, one block of rows each (default both)",
    )
    parser.add_argument(
        "--batch-size", type=positive, default=256, help="transitions per sample (default 256)"
    )
    parser.add_argument(
        "--add-size", type=positive, default=256, help="transitions per add call (default 256)"
    )
    parser.add_argument(
        "--calls", type=positive, default=50, help="calls per timed block (default 50)"
    )
    parser.add_argument(
        "--repeats",
        type=positive,
        default=5,
        help="timed blocks per cell; the cell is their median (default 5)",
    )
    parser.add_argument(
        "--mode",
        choices=("scan", "call"),
        default="scan",
        help="scan: --calls calls inside one compiled lax.scan (what the device loop pays); "
        "call: one jitted call each (adds Python dispatch, tens of microseconds)",
    )
    args = parser.parse_args(argv)
    print(
        f"{args.backend} prioritised replay on {jax.devices()[0].platform}, jax {jax.__version__},"
        f" {args.mode} mode"
    )
    print(
        f"{'item':<9} {'capacity':>10} {'add us':>10} {'sample+update us':>17} "
        f"{'add+sample+update us':>21}"
    )
    for item in args.items:
        for capacity in args.capacities:
            try:
                add_us, sample_us, step_us = bench(
                    args.backend,
                    capacity,
                    args.batch_size,
                    args.add_size,
                    item,
                    args.calls,
                    args.repeats,
                    args.mode,
                )
                print(
                    f"{item:<9} {capacity:>10,} {add_us:>10.1f} {sample_us:>17.1f} "
                    f"{step_us:>21.1f}",
                    flush=True,
                )
            except Exception as e:  # A cell that does not fit in memory, say.
                print(f"{item:<9} {capacity:>10,} failed: {type(e).__name__}: {str(e)[:100]}")


if __name__ == "__main__":
    main()
