"""`python -m bench speed cql`: CQL gradient steps per second of this suite against d3rlpy, in one table.

For each network size (CORL's 3 x 256 actor and critics, and 2 x 64) it times this suite's update, the one the
trainer runs, with one seed and with several seeds side by side (one population step), eager and compiled, and
d3rlpy 2.8.1's CQL at the same sizes, batch and sampled actions, in its own environment (`make bench-peers`).
Measurements alternate within each round (ours, then the peer, for every size) and the table gives the median
and range over the rounds, so background load that comes and goes touches both sides alike.

Columns: seed-steps/s (gradient steps per second times the seeds they advance; one seed: plain steps/s), the
analytic FLOPs of one step (`bench.perf.cql_step_flops`) and the fraction of the device's dense matmul rate
that the step reaches, the ATen operator calls of one eager step (about one kernel launch each on a GPU), per
step and per seed-step, and the ratio to d3rlpy's steps/s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from tabulate import tabulate

from bench.agents.cql import CQL, Batch, CQLConfig
from bench.errors import BenchError
from bench.nets.spec import get_architecture
from bench.perf import PEERS_PYTHON, count_ops, cql_step_flops, matmul_gflops, retain_freed_memory, run_peer
from bench.train import resolve_device

OBS_DIM, ACT_DIM = 17, 6  # Walker2d
# Size name -> (architecture, hidden widths of actor and critics for the FLOP count and the peer).
SIZES = {"corl": ("corl-mlp", (256, 256, 256)), "small": ("mlp-small", (64, 64))}
SIZE_LABELS = {"corl": "3x256 (CORL)", "small": "2x64"}
MODES = ("eager", "compiled")
TRANSITIONS = 10_000
K = TypeVar("K", bound=Hashable)


@dataclass
class Measured:
    """Seed-steps/s of one row over the rounds."""

    rates: list[float] = field(default_factory=list)

    def summary(self) -> str:
        if not self.rates:
            return "-"
        low, high = min(self.rates), max(self.rates)
        return f"{statistics.median(self.rates):.1f} ({low:.1f}-{high:.1f})"

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")


def synthetic_data(device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    data = {
        "observations": torch.randn(TRANSITIONS, OBS_DIM, generator=g),
        "actions": torch.rand(TRANSITIONS, ACT_DIM, generator=g) * 2 - 1,
        "rewards": torch.randn(TRANSITIONS, generator=g),
        "next_observations": torch.randn(TRANSITIONS, OBS_DIM, generator=g),
        "dones": (torch.rand(TRANSITIONS, generator=g) < 0.01).float(),
    }
    return {k: v.to(device) for k, v in data.items()}


def architecture_agent(
    name: str, population: int, compiled: bool, device: torch.device, arch_file: Path | None = None
) -> CQL:
    """A fresh CQL agent of a named architecture (built in, or from `arch_file`, e.g. a grid's
    architectures.yaml) at Walker2d sizes, `population` seeds side by side."""
    arch = get_architecture(name, arch_file)
    torch.manual_seed(0)
    members = [CQL(OBS_DIM, ACT_DIM, arch, CQLConfig(), device=device) for _ in range(population)]
    return CQL.from_members(members, compiled=compiled)


def _batch(data: dict[str, torch.Tensor], population: int, generator: torch.Generator) -> Batch:
    device = data["observations"].device
    idx = torch.randint(TRANSITIONS, (population, CQLConfig().batch_size), generator=generator, device=device)
    return Batch(*(data[k][idx] for k in Batch._fields))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(agent: CQL, data: dict[str, torch.Tensor], seconds: float, min_steps: int = 3) -> float:
    """Gradient steps per second of `agent.update` on batches indexed from `data` as the trainer does, over at
    least `seconds` and `min_steps` steps (the step count is fixed from a first timed step)."""
    generator = torch.Generator(data["observations"].device).manual_seed(1)
    device = agent.device
    _synchronize(device)
    start = time.perf_counter()
    agent.update(_batch(data, agent.population, generator))
    _synchronize(device)
    first = time.perf_counter() - start
    steps = max(min_steps, int(seconds / max(first, 1e-6)))
    start = time.perf_counter()
    for _ in range(steps):
        agent.update(_batch(data, agent.population, generator))
    _synchronize(device)
    return steps / (time.perf_counter() - start)


def alternated_rates(
    agents: Mapping[K, CQL], data: dict[str, torch.Tensor], rounds: int, seconds: float
) -> dict[K, list[float]]:
    """Gradient steps/s of each agent per round, the agents timed in turn within every round (so load that comes
    and goes touches them alike), after one untimed warm-up step each (compilation, optimizer state, allocator)."""
    for agent in agents.values():
        time_steps(agent, data, seconds=0.0, min_steps=2)
    rates: dict[K, list[float]] = {key: [] for key in agents}
    for _ in range(rounds):
        for key, agent in agents.items():
            rates[key].append(time_steps(agent, data, seconds))
    return rates


def operations_per_step(size: str, population: int, device: torch.device) -> int:
    """ATen operator calls of one eager update, batch indexing included."""
    agent = architecture_agent(SIZES[size][0], population, compiled=False, device=device)
    data = synthetic_data(device)
    generator = torch.Generator(device).manual_seed(1)
    agent.update(_batch(data, population, generator))  # the first step creates the optimizer state
    return count_ops(lambda: agent.update(_batch(data, population, generator)))


def run_cql_speed(
    sizes: tuple[str, ...] = ("corl", "small"),
    seeds: tuple[int, ...] = (1, 5),
    modes: tuple[str, ...] = MODES,
    rounds: int = 3,
    seconds: float = 5.0,
    threads: int | None = None,
    peers: bool = True,
    peers_python: Path = PEERS_PYTHON,
    device: str = "cpu",
    progress: bool = True,
) -> str:
    """The table of the module docstring, with a header naming the device, threads and matmul rate."""
    for size in sizes:
        if size not in SIZES:
            raise BenchError(f"speed cql: unknown size {size!r}; use {', '.join(SIZES)}")
    for mode in modes:
        if mode not in MODES:
            raise BenchError(f"speed cql: unknown mode {mode!r}; use {', '.join(MODES)}")
    if rounds < 1 or seconds <= 0 or any(p < 1 for p in seeds):
        raise BenchError("speed cql: --rounds, --seconds and every --seeds value must be positive")
    if peers and not Path(peers_python).exists():
        raise BenchError(
            f"{peers_python}: the peers environment (d3rlpy) is missing; build it with `make bench-peers`, "
            "or pass --no-peers"
        )
    if threads is not None:
        torch.set_num_threads(threads)
    retain_freed_memory()  # as the trainer does, so the table times the trainer's step
    dev = resolve_device(device)  # auto, and a one-line error for a CUDA device torch does not see
    say = print if progress else (lambda *_: None)

    gflops = matmul_gflops(device=dev)
    say(f"dense matmul: {gflops:.0f} GFLOP/s; compiling and warming up ...")
    rows = [(size, p, mode) for size in sizes for p in seeds for mode in modes]
    # One synthetic dataset serves every row: each step indexes its own minibatches from it.
    agents, data = {}, synthetic_data(dev)
    for size, p, mode in rows:
        agents[size, p, mode] = architecture_agent(SIZES[size][0], p, mode == "compiled", dev)
        time_steps(agents[size, p, mode], data, seconds=0.0, min_steps=2)  # compiles
    ops = {(size, p): operations_per_step(size, p, dev) for size in sizes for p in seeds}

    ours = {row: Measured() for row in rows}
    theirs = {size: Measured() for size in sizes}
    for r in range(rounds):
        for size in sizes:
            for p in seeds:
                for mode in modes:
                    rate = time_steps(agents[size, p, mode], data, seconds)
                    ours[size, p, mode].rates.append(rate * p)
            if peers:
                hidden = SIZES[size][1]
                steps = max(10, int(seconds * theirs[size].median)) if theirs[size].rates else 20
                result = run_peer(
                    peers_python, hidden, steps, warmup=max(2, steps // 10), threads=threads, device=device
                )
                theirs[size].rates.append(result["steps_per_s"])
        say(f"round {r + 1}/{rounds} done")

    table = []
    for size in sizes:
        hidden = SIZES[size][1]
        for p in seeds:
            flops = cql_step_flops(OBS_DIM, ACT_DIM, hidden, hidden, population=p)
            for mode in modes:
                measured = ours[size, p, mode]
                peer = theirs[size].median if peers else float("nan")
                table.append(
                    [
                        SIZE_LABELS[size],
                        "suite",
                        p,
                        mode,
                        measured.summary(),
                        f"{measured.median / p:.1f}",
                        f"{flops / p / 1e9:.2f}",
                        f"{100 * measured.median * flops / p / (gflops * 1e9):.0f}%",
                        f"{ops[size, p]:,}" if mode == "eager" else "-",
                        f"{ops[size, p] / p:,.0f}" if mode == "eager" else "-",
                        f"{measured.median / peer:.2f}x" if peers else "-",
                    ]
                )
        if peers:
            flops = cql_step_flops(OBS_DIM, ACT_DIM, hidden, hidden)
            rate = theirs[size].median
            table.append(
                [
                    SIZE_LABELS[size],
                    "d3rlpy 2.8.1",
                    1,
                    "eager",
                    theirs[size].summary(),
                    f"{rate:.1f}",
                    f"{flops / 1e9:.2f}",
                    f"{100 * rate * flops / (gflops * 1e9):.0f}%",
                    "-",
                    "-",
                    "1.00x",
                ]
            )
    header = [
        "networks",
        "trainer",
        "seeds",
        "step",
        "seed-steps/s, median (range)",
        "steps/s",
        "GFLOP per seed-step",
        "of matmul peak",
        "ops per step",
        "ops per seed-step",
        "vs d3rlpy",
    ]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    alternated = ", alternated with d3rlpy" if peers else ""
    lines = [
        f"CQL gradient steps on {name}, {torch.get_num_threads()} torch threads, batch 256, 10 sampled actions, "
        f"Walker2d sizes ({OBS_DIM}/{ACT_DIM}); dense float32 matmul {gflops:.0f} GFLOP/s; {rounds} rounds "
        f"of about {seconds:g} s per row{alternated}",
        tabulate(table, headers=header, disable_numparse=True),
    ]
    return "\n".join(lines)


__all__ = ["alternated_rates", "operations_per_step", "run_cql_speed", "time_steps"]
