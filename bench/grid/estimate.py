"""How long a grid will take here, measured before it runs: `python -m bench grid estimate GRID.yaml`.

For every distinct process the grid will start (algorithm, architecture, environment sizes, seeds side by side,
eager or compiled, the cell's settings), the trainer's own update is timed on synthetic minibatches at the
environment's sizes, one process at a time with the grid's torch threads, on the grid's device (`auto`: the GPU
when torch sees one; a grid that asks for a GPU this machine lacks is timed on the CPU, and the summary says so);
evaluation is timed as the trainer runs it (all episodes stepped together, the population acting on their states)
and counted at full-length episodes, an upper bound. The groups still to run (finished cells are left out; a
checkpoint's steps are subtracted) are then scheduled in order onto the workers, the next group to the first free
worker, as the local launcher does.

What it does not see: several workers at once share the machine's caches and memory bandwidth (on the 2-core
development machine two one-thread workers ran within a few percent of one alone, with the trainer's memory
setting), compilation time, and data loading. It is a plan, not a promise; the grid's own ETA takes over once
cells finish.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tabulate import tabulate

from bench.agents.base import Agent, Batch
from bench.agents.registry import get_algorithm
from bench.data.registry import EnvSpec, dataset_env
from bench.errors import BenchError
from bench.evaluate import make_env, quiet_v4_construction
from bench.grid.run import format_duration, trained_seeds
from bench.grid.spec import Cell, GridSpec
from bench.grid.store import ResultsStore
from bench.perf import retain_freed_memory
from bench.train import RunConfig, device_info, resolve_device, synchronize


@dataclass(frozen=True)
class GroupPlan:
    """One process the grid will start: its cells' key, how many seeds side by side, and the steps left."""

    algo: str
    dataset: str
    arch: str
    seeds: tuple[int, ...]
    steps_left: int
    config: RunConfig


@dataclass(frozen=True)
class Timing:
    """Measured rates of one kind of process."""

    steps_per_second: float  # gradient steps of the whole population per second
    eval_step_seconds: float  # one step of all evaluation episodes at once: the population's act, their MuJoCo steps


def plan_groups(
    spec: GridSpec,
    store: ResultsStore | None,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    first: Sequence[str] = (),
) -> list[GroupPlan]:
    """The groups a `grid run` would start now, in its order: unfinished cells only when `store` is given, each
    with the steps it has left after its checkpoint or the final state it extends, and of the given architectures
    and datasets only (as `grid run --architectures/--datasets`) when they are given, those of `first` first
    (`--first`)."""
    groups: dict[tuple[str, str, str, tuple[int, ...]], list[Cell]] = {}
    steps_done: dict[tuple[str, str, str, tuple[int, ...]], int] = {}
    for cell in spec.cells(architectures, datasets, first):
        key = (cell.algo, cell.dataset, cell.arch, spec.seed_group(cell))
        state = store.state(cell) if store is not None else None
        if state is not None and state.finished:
            continue
        groups.setdefault(key, []).append(cell)
        start = None if state is None else state.resume_step
        extends = None if state is None else state.extends
        # A final state of the grid it extends, when it holds this group's seeds (`grid run` starts from it).
        if start is None and extends is not None and extends.holds(key[3]):
            start = extends.steps
        if start is not None:
            steps_done[key] = max(steps_done.get(key, 0), start)
    return [
        GroupPlan(
            algo,
            dataset,
            arch,
            # A group resuming with finished seeds along trains them too (`pack_groups`).
            trained_seeds(spec, store, cells) if store is not None else tuple(c.seed for c in cells),
            spec.steps - steps_done.get((algo, dataset, arch, chunk), 0),
            spec.run_config(cells[0]),
        )
        for (algo, dataset, arch, chunk), cells in groups.items()
    ]


def _synthetic_batch(
    env: EnvSpec, population: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Batch:
    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(population, batch_size, *shape, generator=generator)

    batch = Batch(
        observations=normal(env.obs_dim),
        actions=torch.rand(population, batch_size, env.act_dim, generator=generator) * 2 - 1,
        rewards=normal(),
        next_observations=normal(env.obs_dim),
        dones=(torch.rand(population, batch_size, generator=generator) < 0.01).float(),
    )
    return Batch(*(x.to(device) for x in batch))


def timing_key(plan: GroupPlan, spec: GridSpec) -> tuple:
    """What sets a group's speed: its algorithm, networks, environment sizes, population, compilation and
    settings; learning rates and the architecture's name do not, so groups that differ only there share a timing."""
    arch = spec.architectures[plan.arch]
    settings = {k: v for k, v in dataclasses.asdict(plan.config.agent_config).items() if not k.endswith("lr")}
    env = dataset_env(plan.dataset)
    return (
        plan.algo,
        arch.actor,
        arch.critic,
        arch.kan,
        env.obs_dim,
        env.act_dim,
        env.name,
        len(plan.seeds),
        plan.config.compile,
        repr(sorted(settings.items())),
    )


def time_group(plan: GroupPlan, spec: GridSpec, seconds: float, device: torch.device | None = None) -> Timing:
    """Time the group's update and its evaluation step on `device` (default the CPU), as the trainer runs them
    there: minibatches on the device, the clock read after the device's queued work is done."""
    device = device or torch.device("cpu")
    config = plan.config
    env = dataset_env(plan.dataset)
    arch = spec.architectures[plan.arch]
    algorithm = get_algorithm(plan.algo)
    torch.manual_seed(0)
    members = [
        algorithm.agent(env.obs_dim, env.act_dim, arch, config.agent_config, device=device, run_steps=config.steps)
        for _ in plan.seeds
    ]
    agent: Agent = algorithm.agent.from_members(members, compiled=config.compile)
    generator = torch.Generator().manual_seed(0)
    batch_size = config.agent_config.batch_size
    # A pool of minibatches made up front, so the timing is of the update alone, as the trainer's epoch loop.
    pool = [_synthetic_batch(env, len(plan.seeds), batch_size, generator, device) for _ in range(8)]
    for batch in pool[:3]:  # optimizer state, compilation (CUDA graphs recorded), the allocator's high-water mark
        agent.update(batch)
    synchronize(device)
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        agent.update(pool[steps % len(pool)])
        steps += 1
    synchronize(device)
    steps_per_second = steps / (time.perf_counter() - start)

    # Evaluation as the trainer runs it: `eval_episodes` sub-environments stepped together, the whole population
    # acting on their states and one member's actions kept; finished episodes restart (autoreset).
    with quiet_v4_construction():
        envs = SyncVectorEnv([lambda: make_env(env.name)] * spec.eval_episodes, autoreset_mode=AutoresetMode.NEXT_STEP)
    obs, _ = envs.reset(seed=0)
    eval_steps, start = 0, time.perf_counter()
    with torch.no_grad():
        while eval_steps < 20 or time.perf_counter() - start < min(seconds, 2.0):
            states = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions = agent.act(states.expand(agent.population, *states.shape))[0].cpu().numpy()
            obs, *_ = envs.step(actions)
            eval_steps += 1
    envs.close()
    eval_step_seconds = (time.perf_counter() - start) / eval_steps
    if config.compile:
        # Dynamo's caches keep a compiled agent's graphs (on CUDA its CUDA graphs and their memory pool) after the
        # agent is gone, and an estimate compiles one agent per kind of process: drop them before the next.
        torch._dynamo.reset()
    return Timing(steps_per_second, eval_step_seconds)


def timing_device(name: str) -> tuple[torch.device, str]:
    """The device a grid's groups are timed on and how the summary names it: the grid's own (`auto` is CUDA when
    torch sees a GPU), or the CPU when the grid asks for a GPU this machine does not have."""
    try:
        device = resolve_device(name)
    except BenchError:
        return torch.device("cpu"), f"timed on the CPU; the grid asks for {name}, which this machine does not have"
    return device, f"timed on {device_info(device)['name']}"


def group_seconds(plan: GroupPlan, spec: GridSpec, timing: Timing) -> float:
    """Training plus evaluation time of one group: every member evaluates `eval_episodes` full-length episodes at
    each evaluation step still to come."""
    done = spec.steps - plan.steps_left
    evaluations = sum(
        1
        for step in range(done + spec.epoch_steps, spec.steps + 1, spec.epoch_steps)
        if step % spec.eval_every == 0 or step == spec.steps
    )
    episode = dataset_env(plan.dataset).max_episode_steps
    eval_seconds = evaluations * len(plan.seeds) * episode * timing.eval_step_seconds
    return plan.steps_left / timing.steps_per_second + eval_seconds


def schedule(durations: list[float], workers: int) -> float:
    """Wall time of running `durations` in order on `workers`, each next one on the first free worker."""
    if workers < 1:
        raise BenchError(f"workers must be at least 1, got {workers}")
    free = [0.0] * min(workers, max(len(durations), 1))
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def estimate_grid(
    spec: GridSpec,
    *,
    results: Path | None = Path("results"),
    workers: int = 1,
    seconds: float = 5.0,
    progress: bool = True,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    first: Sequence[str] = (),
) -> str:
    """The estimate as a table and a summary line; `results=None` plans the whole grid, finished cells too.
    `architectures`, `datasets` and `first` select and order the cells as `grid run` does."""
    if seconds <= 0:
        raise BenchError(f"--seconds must be positive, got {seconds}")
    store = ResultsStore.for_grid(results, spec) if results is not None else None
    plans = plan_groups(spec, store, architectures, datasets, first)
    if not plans:
        selected = " selected" if architectures or datasets else ""
        return f"grid {spec.name}: every{selected} cell is finished; nothing to estimate"
    device, device_note = timing_device(spec.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.resources.threads)
    retain_freed_memory()  # as the trainer does
    timings: dict[tuple, Timing] = {}
    rows = []
    try:
        for plan in plans:
            key = timing_key(plan, spec)
            if key not in timings:
                if progress:
                    env = dataset_env(plan.dataset).name
                    print(f"timing {plan.algo} {plan.arch} on {env}, {len(plan.seeds)} seed(s) ...", flush=True)
                timings[key] = time_group(plan, spec, seconds, device)
            timing = timings[key]
            rows.append((plan, timing, group_seconds(plan, spec, timing)))
    finally:
        torch.set_num_threads(threads)
    durations = [seconds_ for _, _, seconds_ in rows]
    wall = schedule(durations, workers)
    table = [
        [
            get_algorithm(plan.algo).label,
            plan.dataset,
            plan.arch,
            ",".join(map(str, plan.seeds)),
            f"{plan.steps_left:,}",
            f"{timing.steps_per_second * len(plan.seeds):.1f}",
            f"{1000 * timing.eval_step_seconds:.2f}",
            format_duration(duration),
        ]
        for plan, timing, duration in rows
    ]
    headers = ["algorithm", "dataset", "architecture", "seeds", "steps left", "seed-steps/s", "eval ms/step", "time"]
    cells = sum(len(plan.seeds) for plan in plans)
    summary = (
        f"grid {spec.name}: {len(plans)} process(es), {cells} cell(s) to run, {format_duration(sum(durations))} of "
        f"process time; with {workers} worker(s) x {spec.resources.threads} thread(s) about "
        f"{format_duration(wall)} of wall time ({device_note}). Measured now, one process at a time; evaluation at "
        f"full-length episodes (an upper bound); compilation and data loading not counted."
    )
    return tabulate(table, headers=headers, disable_numparse=True) + "\n" + summary
