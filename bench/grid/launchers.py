"""Launchers run a grid's cells: worker processes on this machine, or Ray tasks on a local or remote cluster.

Both run `run_group` once per group of cells in a process of its own (one cell, or the seeds of one
(dataset, architecture) trained side by side), so a crash of one group, even a segfault, never takes the others
down, and both report each cell's outcome to the grid loop as it arrives. Records are the
same whichever launcher ran them: training is deterministic on CPU given the seed and the thread count.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.errors import BenchError, first_line
from bench.grid.spec import Cell, Resources
from bench.grid.store import FINISHED, CellLock, error_path, write_error
from bench.train import RunConfig, final_state_path, read_record, train_group


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs to train one cell (picklable: it crosses process and machine boundaries)."""

    cell: Cell
    config: RunConfig
    out: Path  # absolute, so a worker with another working directory writes to the same place
    force: bool = False
    threads: int = 1
    progress: bool = False
    cache_dir: Path | None = None
    local_dir: Path | None = None
    grid_overrides: dict[str, Any] | None = None  # GridSpec.record_overrides, kept in the record
    # The seeds its group trains when that is more than the group's cells: the group resumes from a checkpoint
    # that holds seeds finished since (one diverged), which train along and keep their records (`pack_groups`).
    group_seeds: tuple[int, ...] = ()
    keep_final_state: bool = False
    # The folder of this cell's (dataset, architecture) in the grid this one extends: the group starts from the
    # final state there that holds exactly its seeds, if there is one.
    extends: Path | None = None


@dataclass(frozen=True)
class CellOutcome:
    """What became of a cell: done, diverged or failed; busy (locked by another process) or skipped (finished
    by another process since the grid looked)."""

    status: str
    seconds: float = 0.0
    error: str = ""
    final_score: float | None = None


# Cells one process trains together: one cell, or seeds of one (dataset, architecture) side by side.
Group = tuple[CellTask, ...]
Report = Callable[[CellTask, CellOutcome], None]
Target = Callable[[Group], list[CellOutcome]]


class Launcher(Protocol):
    name: str

    @property
    def parallelism(self) -> int:
        """How many groups run at once (for the ETA)."""
        ...

    def run(self, groups: Sequence[Group], report: Report) -> None:
        """Run every group, calling `report` in this process for each of its cells as the group ends."""
        ...


def run_group(group: Group) -> list[CellOutcome]:
    """Train a group of cells of one (dataset, architecture) side by side, each under its lock; one outcome per
    cell, in order. A failing group never raises: its outcomes say failed, and the error is in the failed
    records (a crash in training) or in `<record>.error` (a failure before training started). A cell locked
    by another process is busy, one finished meanwhile is skipped; the others train together. A group that
    resumes with finished seeds along (`CellTask.group_seeds`) locks those too, and is busy as a whole if any of
    its seeds is locked elsewhere. A group of several seeds first takes a lock on the whole group
    (`seed0+seed1.lock`, `group_lock_record`): two grid processes that reach the same group at once would otherwise
    each lock the seeds they got to first and train it as two smaller groups; the second now finds it busy."""
    torch.set_num_threads(group[0].threads)
    start = time.perf_counter()
    outcomes: list[CellOutcome | None] = [None] * len(group)
    locks: list[CellLock] = []
    try:
        if (whole := group_lock_record(group)) is not None:
            lock = CellLock(whole)
            if not lock.acquire():
                return [CellOutcome("busy")] * len(group)
            locks.append(lock)
        along = [_seed_out(group[0], seed) for seed in _seeds_along(group)]
        for out in along:
            lock = CellLock(out)
            if not lock.acquire():  # another process trains that seed again (--force): resume later
                return [CellOutcome("busy")] * len(group)
            locks.append(lock)
        training = []
        for i, task in enumerate(group):
            lock = CellLock(task.out)
            if not lock.acquire():
                if task.group_seeds:  # a group resumes with every seed its checkpoint holds, or not at all
                    return [CellOutcome("busy")] * len(group)
                outcomes[i] = CellOutcome("busy")
                continue
            locks.append(lock)
            existing = read_record(task.out)
            if existing is not None and existing["status"] in FINISHED and not task.force:
                outcomes[i] = CellOutcome("skipped", final_score=existing.get("final_score"))
                continue
            error_path(task.out).unlink(missing_ok=True)
            training.append(i)
        if training:
            trained = _train([group[i] for i in training], start)
            for i, outcome in zip(training, trained, strict=True):
                outcomes[i] = outcome
        return [outcome for outcome in outcomes if outcome is not None]
    finally:
        for lock in locks:
            lock.release()


def group_lock_record(group: Sequence[CellTask]) -> Path | None:
    """The name whose lock (`<name>.lock`) a group of several seeds holds while it trains: its seeds and those it
    trains along, in order, as its checkpoint names them (`seed0+seed1`); None for one seed, whose cell lock is
    enough."""
    seeds = sorted({task.cell.seed for task in group} | set(_seeds_along(group)))
    if len(seeds) < 2:
        return None
    return group[0].out.with_name("+".join(f"seed{seed}" for seed in seeds) + ".json")


def _seeds_along(group: Sequence[CellTask]) -> list[int]:
    """The seeds a group trains beside its cells (finished ones, whose records stay)."""
    own = {task.cell.seed for task in group}
    return [seed for seed in group[0].group_seeds if seed not in own]


def _seed_out(task: CellTask, seed: int) -> Path:
    """The record path of another seed of `task`'s (dataset, architecture): the grid's layout, seed<k>.json."""
    return task.out.with_name(f"seed{seed}.json")


def _train(tasks: list[CellTask], start: float) -> list[CellOutcome]:
    first = tasks[0]
    before = [_file_id(task.out) for task in tasks]
    seeds = list(first.group_seeds) or [task.cell.seed for task in tasks]
    extend_from = None
    if first.extends is not None:
        extend_from = final_state_path([first.extends / f"seed{seed}.json" for seed in seeds])
    try:
        records = train_group(
            first.config,
            seeds,
            [_seed_out(first, seed) for seed in seeds],
            force=first.force,
            progress=first.progress,
            cache_dir=first.cache_dir,
            local_dir=first.local_dir,
            grid_overrides=first.grid_overrides,
            keep_final_state=first.keep_final_state,
            extend_from=extend_from if extend_from is not None and extend_from.exists() else None,
        )
    except Exception as exc:  # the isolation point: whatever one group raises, the grid goes on
        seconds = time.perf_counter() - start
        outcomes = []
        for task, file_id in zip(tasks, before, strict=True):
            written = read_record(task.out)
            fresh = _file_id(task.out) != file_id and written is not None
            if fresh and written["status"] == "diverged":  # a seed that diverged before the group failed
                outcomes.append(CellOutcome("diverged", seconds, first_line(written.get("error"))))
                continue
            if fresh and written["status"] == "failed":
                error = first_line(written.get("error"))  # train_group wrote the record, traceback included
            else:
                error = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                detail = "" if isinstance(exc, BenchError) else "\n" + traceback.format_exc()
                write_error(task.out, error + detail)
            outcomes.append(CellOutcome("failed", seconds, first_line(error) or type(exc).__name__))
        return outcomes
    seconds = time.perf_counter() - start
    by_seed = dict(zip(seeds, records, strict=True))
    return [
        CellOutcome(record["status"], seconds, first_line(record.get("error")), record.get("final_score"))
        for record in (by_seed[task.cell.seed] for task in tasks)
    ]


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def lost_worker_outcome(task: CellTask, error: str, seconds: float = 0.0) -> CellOutcome:
    """What became of a cell whose worker died: what its record says when the worker finished it before dying
    (its last record written, say), else failed, its error kept beside the record unless another process has taken
    the cell over. Under `--force` a finished record may be the one the cell was to replace, so it counts as lost."""
    with CellLock(task.out) as locked:
        existing = read_record(task.out)
        if existing is not None and existing["status"] in FINISHED and not task.force:
            error_line = first_line(existing.get("error"))
            return CellOutcome(existing["status"], seconds, error_line, existing.get("final_score"))
        if locked:
            write_error(task.out, f"{error}; a checkpoint beside the record, if any, resumes the next attempt")
    return CellOutcome("failed", seconds, error)


def _exit_description(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process died from {name}"
    return f"worker process exited with code {exitcode} without reporting"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _child(target: Target, group: Group, conn: Connection) -> None:
    try:
        outcomes = target(group)
    except KeyboardInterrupt:
        return  # the grid process is stopping every worker; the checkpoint resumes these cells next time
    conn.send(outcomes)
    conn.close()


class LocalLauncher:
    """`workers` processes on this machine, a fresh spawned process per group of cells."""

    name = "local"

    def __init__(self, workers: int = 1, target: Target = run_group) -> None:
        if workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.target = target  # the function each worker runs; tests swap in one that crashes

    @property
    def parallelism(self) -> int:
        return self.workers

    def run(self, groups: Sequence[Group], report: Report) -> None:
        # "spawn": a forked child would inherit torch's thread pools and any CUDA state of this process.
        ctx = multiprocessing.get_context("spawn")
        pending = deque(groups)
        running: dict[int, tuple[Any, Connection, Group, float]] = {}
        # A batch scheduler stops jobs with SIGTERM, which would end this process without stopping its workers.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    group = pending.popleft()
                    receiver, sender = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=_child, args=(self.target, group, sender), daemon=True)
                    process.start()
                    sender.close()
                    running[process.sentinel] = (process, receiver, group, time.perf_counter())
                for sentinel in wait(list(running)):
                    process, receiver, group, started = running.pop(sentinel)
                    process.join()
                    outcomes = self._outcomes(process.exitcode, receiver, group, started)
                    for task, outcome in zip(group, outcomes, strict=True):
                        report(task, outcome)
                    receiver.close()
        finally:
            # Interrupted: let each worker stop as Ctrl-C stops a run (lock released, checkpoint kept), then insist.
            for process, _, _, _ in running.values():
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            for process, receiver, _, _ in running.values():
                process.join(timeout=10)
                if process.is_alive():
                    process.terminate()
                    process.join()
                receiver.close()
            if in_main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    @staticmethod
    def _outcomes(exitcode: int | None, receiver: Connection, group: Group, started: float) -> list[CellOutcome]:
        seconds = time.perf_counter() - started  # the wall time of the whole group, process start included
        try:
            return [replace(outcome, seconds=seconds) for outcome in receiver.recv()]
        except EOFError:  # the worker died before it could send its outcomes
            pass
        error = _exit_description(exitcode)
        return [lost_worker_outcome(task, error, seconds) for task in group]


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError(
            "the Ray launcher needs the ray package: pip install ray==2.60.0 (it is in requirements.txt; "
            "`make setup` installs it), or use --launcher local"
        ) from None
    return ray


# Ray's GCS client in a child process: a refused token is one exception there, where `ray.init` retries it twenty
# times with a log line each, and a misconfiguration that aborts Ray's C++ code cannot take the grid down.
_GCS_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1])
except Exception as exc:
    print(type(exc).__name__, (str(exc).strip().splitlines() or [""])[0], sep="\\t")
else:
    print("ok")
"""
TOKEN_HELP = (
    "the head's token (`ray get-auth-token` on the head prints it) in RAY_AUTH_TOKEN, in a file named by "
    "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
)
RAY_HEAD_HELP = (
    "check the address and port (the head's `ray start --head --port`, 6379 by default), that the head runs "
    "(`ray status` on it) and that this machine can reach it"
)


def ray_token_source() -> str:
    """Where Ray takes its authentication token from, in Ray's order; '' when there is none.

    BenchError when RAY_AUTH_TOKEN_PATH names an unreadable or empty file: Ray aborts the process on that.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        try:
            readable = bool(path.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            readable = False
        if not readable:
            raise BenchError(
                f"RAY_AUTH_TOKEN_PATH names {path}, which cannot be read or is empty: point it at a file holding "
                "the Ray head's token, or unset it"
            )
        return f"{path} (RAY_AUTH_TOKEN_PATH)"
    default = Path.home() / ".ray" / "auth_token"
    try:
        return str(default) if default.read_text(encoding="utf-8").strip() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def check_ray_head(address: str, timeout: float = 90.0) -> None:
    """Before `ray.init(address=...)`: reach the head at `address` (HOST:PORT) and pass its authentication, or
    raise a one-line BenchError that says what to check. Other address forms (auto, ray://) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or "/" in address or not port.isdigit():
        return
    token_mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"
    source = ray_token_source() if token_mode else ""
    if token_mode and not source:
        raise BenchError(f"RAY_AUTH_MODE=token, but no Ray authentication token is set: put {TOKEN_HELP}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise BenchError(f"cannot reach a Ray head at {address} ({exc.strerror or exc}): {RAY_HEAD_HELP}") from None
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _GCS_PROBE, address], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"no Ray cluster answered at {address} in {timeout:g} s: {RAY_HEAD_HELP}") from None
    kind, _, detail = probe.stdout.strip().partition("\t")
    if kind == "ok":
        return
    if kind == "AuthenticationError" and not token_mode:
        raise BenchError(
            f"the Ray cluster at {address} uses token authentication: set RAY_AUTH_MODE=token and put {TOKEN_HELP}"
        )
    if kind == "AuthenticationError":
        raise BenchError(f"the Ray cluster at {address} refused the token from {source}: put {TOKEN_HELP}")
    if not kind:  # the probe itself died; the first line of its error says why
        kind, detail = f"exit code {probe.returncode}", first_line(probe.stderr)
    raise BenchError(
        f"no Ray cluster answered at {address} ({kind}{': ' + detail if detail else ''}); is it the head's GCS port, "
        f"not the dashboard's or the client server's? {RAY_HEAD_HELP}"
    )


def join_ray_cluster(ray: Any, address: str) -> None:
    """`ray.init(address=address)`, a failure to connect as one line that says what to check."""
    check_ray_head(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, RuntimeError, ray's own: all mean the cluster was not joined
        raise BenchError(
            f"cannot join the Ray cluster at {address} ({type(exc).__name__}: {first_line(str(exc))}): "
            f"{RAY_HEAD_HELP}; with token authentication, set RAY_AUTH_MODE=token and put {TOKEN_HELP}"
        ) from None


def local_cpus() -> int:
    """CPUs this process may use (the affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class RayLauncher:
    """Each cell a Ray task asking for the grid's resources; fractional GPUs let several cells share one GPU.

    Without an address (`--ray-address` or $RAY_ADDRESS) Ray starts on this machine with its CPU count; with
    one it joins that cluster (`join_ray_cluster`: a head that cannot be reached or refuses this process is one
    line saying what to set), whose nodes must see the results folder, the datasets and the code at the same
    paths.
    """

    name = "ray"

    def __init__(self, resources: Resources, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}")
        self.resources = resources
        self.workers = workers
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._slots = workers or 1

    @property
    def parallelism(self) -> int:
        return self._slots

    def run(self, groups: Sequence[Group], report: Report) -> None:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            if self.address:
                join_ray_cluster(ray, self.address)
            else:
                # "local": a new instance even when `ray start` left its address in Ray's temp folder.
                ray.init(address="local", num_cpus=local_cpus(), include_dashboard=False, logging_level=logging.WARNING)
        inflight: dict[Any, Group] = {}
        try:
            cluster = ray.cluster_resources()
            self._slots = self._fit(cluster, strict=started and not self.address)
            if (warning := self._unshared_gpu_warning(groups, cluster)) is not None:
                logging.getLogger(__name__).warning(warning)
            remote = fresh_worker_task(ray, run_group, self.resources)
            pending = deque(groups)
            while pending or inflight:
                while pending and (self.workers is None or len(inflight) < self.workers):
                    group = pending.popleft()
                    inflight[remote.remote(group)] = group
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    group = inflight.pop(ref)
                    try:
                        outcomes = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        error = f"Ray task died: {type(exc).__name__}: {first_line(str(exc))}"
                        outcomes = [lost_worker_outcome(task, error) for task in group]
                    for task, outcome in zip(group, outcomes, strict=True):
                        report(task, outcome)
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _unshared_gpu_warning(self, groups: Sequence[Group], cluster: dict[str, float]) -> str | None:
        """A warning when cells will train on GPUs that Ray does not share out: they ask for none
        (resources.num_gpus 0), so Ray packs them by CPUs alone and hides no GPU from them, and every one lands on
        the first GPU torch sees."""
        if self.resources.num_gpus > 0:
            return None
        devices = {task.config.device for group in groups for task in group}
        on_gpu = sorted(d for d in devices if d.startswith("cuda") or (d == "auto" and cluster.get("GPU", 0) > 0))
        if not on_gpu:
            return None
        return (
            f"cells run on device {', '.join(on_gpu)} but ask Ray for no GPU (resources.num_gpus: 0 in the grid "
            "file): Ray packs them by CPUs alone and every cell trains on the first GPU it sees; set "
            "resources.num_gpus (0.2: five cells a GPU), or device: cpu"
        )

    def _fit(self, cluster: dict[str, float], strict: bool) -> int:
        """Cells that fit on the cluster at once; an impossible request fails here instead of waiting forever."""
        slots = []
        for key, need in (("CPU", self.resources.num_cpus), ("GPU", self.resources.num_gpus)):
            if need <= 0:
                continue
            have = cluster.get(key, 0.0)
            if have < need:
                message = (
                    f"each cell asks for {need:g} {key} (resources.num_{key.lower()}s in the grid file) but the Ray "
                    f"cluster has {have:g}; lower it in the grid file or use a cluster that has them"
                )
                if strict:
                    raise BenchError(message)
                logging.getLogger(__name__).warning(message)
            # Not have // need: 1.0 // 0.2 is 4.0 in binary floating point, a fifth of a GPU fitting four times.
            slots.append(math.floor(have / need + 1e-9) if have >= need else 1)
        fits = max(1, min(slots)) if slots else 1
        return min(fits, self.workers) if self.workers else fits


def fresh_worker_task(ray: Any, function: Callable[..., Any], resources: Resources) -> Any:
    """`function` as a Ray task that asks for `resources` and runs in a fresh worker process each time, as the
    local launcher's groups do. Ray reuses a task's worker unless the task says otherwise (`max_calls`, which
    only `ray.remote` can set; Ray sets it itself only when `ray.remote` is given the GPUs): a reused worker keeps
    the GPU CUDA saw when it started, whatever GPU Ray assigns later, and the memory and compiled code of every
    group it trained before."""
    return ray.remote(max_calls=1)(function).options(
        num_cpus=resources.num_cpus, num_gpus=resources.num_gpus, max_retries=0
    )


def make_launcher(
    name: str, resources: Resources, workers: int | None = None, ray_address: str | None = None
) -> Launcher:
    """The launcher called `name` ("local" or "ray"); local runs one worker unless told otherwise."""
    if name == "local":
        if ray_address:
            raise BenchError("--ray-address needs --launcher ray")
        return LocalLauncher(workers or 1)
    if name == "ray":
        return RayLauncher(resources, workers, ray_address)
    raise BenchError(f"unknown launcher {name!r}: use local or ray")
