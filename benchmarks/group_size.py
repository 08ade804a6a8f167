"""How many seeds side by side per process? CQL seed-steps/s of architectures at several group sizes, alternated.

    python -m benchmarks.group_size --arch-file results/cpu-study-ablations/architectures.yaml \
        --archs kan4,kan4-kan-critic --sizes 1,2,3,5 --threads 1 --compile

A group of P seeds trains in one process with one step (`seeds_per_process` in a grid file, `--seeds` of `bench
run`), so P seeds cost one step's operators and the larger batched matmuls, but also P times the activations,
which outgrow the CPU's caches. Each round times every (architecture, size) for about `--seconds`
(`bench.speed.time_steps`, the trainer's update at Walker2d sizes) in turn; the table gives the median
seed-steps/s (steps/s times P) and the median over rounds of its per-round ratio to one seed of the same
architecture, so load that comes and goes touches every row alike. Above 1 a group pays; a size past the peak
is slower per seed than a smaller one, and on a machine with idle cores several smaller groups (`grid run
--seeds-per-process`) then train faster than one large group.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from tabulate import tabulate

from bench.perf import retain_freed_memory
from bench.speed import alternated_rates, architecture_agent, synthetic_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="mlp-small,kan-small", help="architectures, comma-separated")
    parser.add_argument("--sizes", default="1,2,3,5", help="seeds side by side, comma-separated; 1 is added")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="time the compiled step, as the grids train")
    parser.add_argument("--arch-file", type=Path, help="a YAML file of named architectures, e.g. a grid's")
    args = parser.parse_args()
    sizes = sorted({1, *(int(size) for size in args.sizes.split(","))})
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the trainer does
    device = torch.device("cpu")
    names = args.archs.split(",")
    data = synthetic_data(device)
    rows = [(name, size) for name in names for size in sizes]
    agents = {row: architecture_agent(row[0], row[1], args.compile, device, args.arch_file) for row in rows}
    steps = alternated_rates(agents, data, args.rounds, args.seconds)
    rates = {(name, size): [rate * size for rate in steps[name, size]] for name, size in rows}  # seed-steps/s
    table = []
    for name, size in rows:
        ratios = [r / one for r, one in zip(rates[name, size], rates[name, 1], strict=True)]
        table.append(
            [
                name,
                size,
                f"{statistics.median(rates[name, size]) / size:.2f}",
                f"{statistics.median(rates[name, size]):.1f}",
                f"{statistics.median(ratios):.2f}x",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
            ]
        )
    print(
        f"{torch.get_num_threads()} torch thread(s), {'compiled' if args.compile else 'eager'} step, Walker2d sizes, "
        f"{args.rounds} rounds of about {args.seconds:g} s per row"
    )
    headers = ["architecture", "seeds", "steps/s", "seed-steps/s", "vs 1 seed", "range"]
    print(tabulate(table, headers=headers, disable_numparse=True))


if __name__ == "__main__":
    main()
