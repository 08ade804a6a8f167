"""CQL steps/s with glibc malloc's defaults against `bench.perf.retain_freed_memory`, alternated by process.

    python -m benchmarks.allocator [--archs mlp-small,kan-small] [--seeds 5] [--procs 1] [--rounds 3]

The setting is process-wide and cannot be undone, so every measurement is a fresh process (one torch thread):
each round starts `--procs` processes at once with the defaults, then as many with the memory retained, and so
on for every architecture, so load that comes and goes touches both alike. `--procs 2` is how the study runs
on a 2-core machine (two grid workers, one thread each), where the two processes also share memory bandwidth.
The table gives the seed-steps/s of all processes together (median and range over rounds), the system CPU
time per gradient step (page faults and the kernel's zeroing of fresh pages), and the median per-round ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from tabulate import tabulate

MODES = ("glibc defaults", "retained")


def worker(arch: str, seeds: int, seconds: float, retain: bool) -> None:
    """Time one agent in this process and print one JSON line."""
    from bench.perf import retain_freed_memory
    from bench.speed import architecture_agent, synthetic_data, time_steps

    torch.set_num_threads(1)
    retained = retain_freed_memory() if retain else False
    device = torch.device("cpu")
    agent = architecture_agent(arch, seeds, False, device)
    data = synthetic_data(device)
    time_steps(agent, data, seconds=0.0, min_steps=3)  # optimizer state, warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    steps_per_s = time_steps(agent, data, seconds)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    steps = steps_per_s * elapsed
    print(
        json.dumps(
            {
                "retained": retained,
                "steps_per_s": steps_per_s,
                "system_ms_per_step": 1000 * (after.ru_stime - before.ru_stime) / steps,
                "user_ms_per_step": 1000 * (after.ru_utime - before.ru_utime) / steps,
            }
        )
    )


def measure(arch: str, seeds: int, seconds: float, retain: bool, procs: int) -> list[dict[str, float]]:
    command = [sys.executable, "-m", "benchmarks.allocator", "--worker", "--archs", arch, "--seeds", str(seeds)]
    command += ["--seconds", str(seconds)] + (["--retain"] if retain else [])
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    results = []
    for process in running:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"benchmark worker failed ({process.returncode}): {' '.join(command)}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="mlp-small,kan-small", help="named architectures, comma-separated")
    parser.add_argument("--seeds", type=int, default=5, help="seeds side by side in each process")
    parser.add_argument("--procs", type=int, default=1, help="processes at once, one torch thread each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--retain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.archs, args.seeds, args.seconds, args.retain)
        return
    archs = args.archs.split(",")
    runs: dict[tuple[str, str], list[list[dict[str, float]]]] = {(a, m): [] for a in archs for m in MODES}
    for _ in range(args.rounds):
        for arch in archs:
            for mode in MODES:
                runs[arch, mode].append(measure(arch, args.seeds, args.seconds, mode == "retained", args.procs))
    if not all(r["retained"] for rounds in (runs[a, "retained"] for a in archs) for rs in rounds for r in rs):
        print("note: retain_freed_memory() had no effect here (not glibc?)", file=sys.stderr)
    rows = []
    for arch in archs:
        base = [sum(r["steps_per_s"] for r in rs) * args.seeds for rs in runs[arch, MODES[0]]]
        for mode in MODES:
            rates = [sum(r["steps_per_s"] for r in rs) * args.seeds for rs in runs[arch, mode]]
            system = [r["system_ms_per_step"] for rs in runs[arch, mode] for r in rs]
            user = [r["user_ms_per_step"] for rs in runs[arch, mode] for r in rs]
            ratios = [rate / b for rate, b in zip(rates, base, strict=True)]
            rows.append(
                [
                    arch,
                    mode,
                    f"{statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})",
                    f"{statistics.median(user):.1f}",
                    f"{statistics.median(system):.1f}",
                    f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                ]
            )
    print(
        f"{args.procs} process(es) at once, 1 torch thread each, {args.seeds} seed(s) side by side, "
        f"{args.rounds} rounds of about {args.seconds:g} s, Walker2d sizes"
    )
    headers = ["architecture", "malloc", "seed-steps/s, all processes", "user ms/step", "system ms/step", "ratio"]
    print(tabulate(rows, headers=headers, disable_numparse=True))


if __name__ == "__main__":
    main()
