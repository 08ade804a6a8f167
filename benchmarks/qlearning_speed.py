"""Speed of `qlearning_transitions` (vectorized) against d4rl's `qlearning_dataset` loop, in one process.

    python -m benchmarks.qlearning_speed [--rows 1000000] [--loop-rows 100000]

Prints seconds for a D4RL-sized stream (hopper sizes, with and without `timeouts`) and the speed-up over the
literal port of d4rl's loop (the tests' oracle) on `--loop-rows` rows. The target: a 2,000,000-row
medium-expert file is turned into transitions in about a second, so loading never dominates a run.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bench.data.qlearning import MissingTimeoutsWarning, qlearning_transitions
from tests.test_data_qlearning import d4rl_loop


def stream(rows: int, with_timeouts: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "observations": rng.normal(size=(rows, 11)).astype(np.float32),
        "actions": rng.normal(size=(rows, 3)).astype(np.float32),
        "rewards": rng.normal(size=rows).astype(np.float32),
        "terminals": rng.random(rows) < 0.002,
    }
    if with_timeouts:
        arrays["timeouts"] = rng.random(rows) < 0.001
    return arrays


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTimeoutsWarning)
        fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--loop-rows", type=int, default=100_000)
    args = parser.parse_args()
    for with_timeouts in (True, False):
        label = "timeouts" if with_timeouts else "fallback (no timeouts)"
        big = seconds(qlearning_transitions, stream(args.rows, with_timeouts))
        small = stream(args.loop_rows, with_timeouts)
        ours, loop = seconds(qlearning_transitions, small), seconds(d4rl_loop, small)
        print(
            f"{label}: {args.rows:,} rows in {big:.3f} s; on {args.loop_rows:,} rows {ours:.4f} s against d4rl's "
            f"loop {loop:.2f} s ({loop / ours:.0f}x)"
        )


if __name__ == "__main__":
    main()
