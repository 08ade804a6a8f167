"""CQL step time of the paper's architectures against its MLP baseline, alternated in one process.

    python -m benchmarks.hybrid_speed [--archs mlp,kan1-mlp,kan2-mlp,corl-mlp] [--seeds 1] [--rounds 5]
    python -m benchmarks.hybrid_speed --arch-file results/cpu-study-ablations/architectures.yaml \
        --archs kan4,kan4-spline,kan4-g3,kan4-g10,kan4-range1,rbf4,mlp38 --seeds 5 --threads 1 --compile

By default every architecture shares CORL's 3 x 256 critics, so the ratio to `mlp` is the cost of the actor's
body; `--arch-file` adds named architectures (a grid's architectures.yaml), such as the CPU study's ablations. Each
round times every architecture for about `--seconds` (`bench.speed.time_steps`: the trainer's update on
batches indexed as the trainer does); the table gives each one's median steps/s and the median over rounds of
its per-round time ratio to the baseline, so load that comes and goes touches every architecture alike. The
target: the KAN-actor hybrids within 1.05x of `mlp`'s epoch time.
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
    parser.add_argument("--archs", default="mlp,kan1-mlp,kan2-mlp,corl-mlp", help="the first is the baseline")
    parser.add_argument("--seeds", type=int, default=1, help="seeds side by side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="time the compiled step, as the grids train")
    parser.add_argument("--arch-file", type=Path, help="a YAML file of named architectures, e.g. a grid's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the trainer does: without it large activations cost page faults every step
    device = torch.device("cpu")
    names = args.archs.split(",")
    data = synthetic_data(device)
    agents = {name: architecture_agent(name, args.seeds, args.compile, device, args.arch_file) for name in names}
    rates = alternated_rates(agents, data, args.rounds, args.seconds)
    base = names[0]
    rows = []
    for name in names:
        ratios = [b / r for r, b in zip(rates[name], rates[base], strict=True)]  # time ratio: base rate / rate
        rows.append(
            [
                name,
                f"{statistics.median(rates[name]):.2f}",
                f"{statistics.median(ratios):.3f}x",
                f"{min(ratios):.3f}-{max(ratios):.3f}",
            ]
        )
    print(
        f"{args.seeds} seed(s) side by side, {torch.get_num_threads()} torch threads, "
        f"{'compiled' if args.compile else 'eager'} step, {args.rounds} rounds of about {args.seconds:g} s per "
        "architecture"
    )
    print(tabulate(rows, headers=["architecture", "steps/s", f"epoch time vs {base}", "range"], disable_numparse=True))


if __name__ == "__main__":
    main()
