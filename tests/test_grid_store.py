"""The results store: record paths, cell states, grid.yaml mixing checks, and cell locks across processes."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.grid.spec import Cell, GridSpec, load_grid
from bench.grid.store import (
    PROBE_WAIT,
    CellLock,
    CheckpointProgress,
    ResultsStore,
    error_path,
    is_locked,
    lock_path,
    write_error,
)
from bench.nets.spec import load_architectures

GRID = """\
name: tiny
architectures:
  - mlp-small
  - mine: {actor: 'kan[2]', critic: 'mlp[8]'}
datasets: [local:hopper-random, d4rl:hopper-medium-v2]
seeds: [0, 1]
steps: 4
epoch_steps: 2
eval_every: 4
"""


def grid(tmp_path: Path, text: str = GRID, name: str = "grid.yaml") -> GridSpec:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_grid(path)


def record(status: str, **extra) -> dict:
    return {"schema_version": 1, "cell": {}, "status": status, "final_score": 1.5, "error": None, **extra}


def test_record_paths_are_readable_and_distinct(tmp_path: Path) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    assert store.root == tmp_path / "results" / "tiny"
    path = store.record_path(Cell("d4rl:hopper-medium-v2", "mlp-small", 1))
    assert path == store.root / "d4rl-hopper-medium-v2" / "mlp-small" / "seed1.json"
    assert len({store.record_path(cell) for cell in spec.cells()}) == len(spec.cells())
    assert lock_path(path).name == "seed1.lock" and error_path(path).name == "seed1.error"


def test_cell_states(tmp_path: Path) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    cell = spec.cells()[0]
    path = store.record_path(cell)
    assert store.state(cell).state == "missing" and store.state(cell).note == ""

    path.parent.mkdir(parents=True)
    path.write_text('{"status": "do')
    state = store.state(cell)
    assert state.state == "missing" and "corrupt" in state.note and not state.finished

    path.write_text(json.dumps(record("done")))
    assert store.state(cell).state == "done" and store.state(cell).finished
    path.write_text(json.dumps(record("diverged", error="non-finite critic_loss")))
    assert store.state(cell).finished and store.state(cell).note == "non-finite critic_loss"
    path.write_text(json.dumps(record("failed", error="RuntimeError: boom\nTraceback ...")))
    state = store.state(cell)
    assert state.state == "failed" and state.note == "RuntimeError: boom" and not state.finished

    # A newer failure before training (bad input, a killed worker) wins over an older failed record...
    write_error(path, "worker process died from SIGSEGV")
    assert store.state(cell).note == "worker process died from SIGSEGV"
    # ...and is the only trace when there is no record at all.
    path.unlink()
    assert store.state(cell).state == "failed"


@pytest.mark.parametrize(
    ("name", "checkpoint"),
    [
        ("seed0.ckpt.pt", {"steps_done": 150, "agent": {"w": torch.zeros(3)}}),  # one cell's
        ("seed1+seed0.ckpt.pt", {"records": [{"steps_done": 100}, {"steps_done": 150}]}),  # a seed group's
    ],
)
def test_a_killed_cell_with_a_checkpoint_is_partial(tmp_path: Path, name: str, checkpoint: dict) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    cell = Cell("local:hopper-random", "mlp-small", 0)
    path = store.record_path(cell)
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path.with_name(name))
    state = store.state(cell)
    assert (state.state, state.resume_step, state.finished) == ("partial", 150, False)
    assert state.note == "checkpoint at step 150: the next run resumes from it"
    assert store.state(Cell("local:hopper-random", "mlp-small", 1)).resume_step == (100 if "+" in name else None)

    write_error(path, "worker process died from SIGKILL")  # the launcher saw its worker die
    state = store.state(cell)
    assert state.state == "failed" and state.resume_step == 150
    assert state.note == "worker process died from SIGKILL; the next run resumes from step 150 (checkpoint)"
    error_path(path).unlink()

    path.write_text(json.dumps(record("done")))  # a finished record: the checkpoint does not count
    assert store.state(cell).state == "done" and store.state(cell).resume_step is None


def test_a_checkpoint_s_epoch_times_give_the_time_its_run_has_left(tmp_path: Path) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    cell = Cell("local:hopper-random", "mlp-small", 1)
    path = store.record_path(cell)
    path.parent.mkdir(parents=True)
    checkpoint = path.with_name("seed0+seed1.ckpt.pt")
    torch.save({"records": [{"steps_done": 4}, {"steps_done": 4, "seconds_per_epoch": [9.0, 2.0]}]}, checkpoint)
    assert store.state(cell).progress == CheckpointProgress(checkpoint, 4, (9.0, 2.0))

    # 3 epochs of 1,000 steps done, the first slow (a compilation): the median pace of the last ones counts.
    progress = CheckpointProgress(checkpoint, 3000, (600.0, 100.0, 120.0))
    assert progress.seconds_left(5000) == 2 * 120.0
    assert progress.seconds_left(5000, recent=2) == 2 * 110.0
    assert progress.seconds_left(3000) == 0.0
    assert CheckpointProgress(checkpoint, 3000).seconds_left(5000) is None  # an untimed (older) checkpoint


def test_an_unreadable_checkpoint_leaves_the_cell_missing(tmp_path: Path) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    cell = spec.cells()[0]
    path = store.record_path(cell)
    path.parent.mkdir(parents=True)
    path.with_name("seed0.ckpt.pt").write_bytes(b"torn")
    assert store.state(cell).state == "missing"


def test_grid_yaml_refuses_to_mix_configurations(tmp_path: Path) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    assert store.grid_differences(spec) is None
    store.write_grid(spec)
    assert store.grid_differences(spec) == []
    store.check_grid(spec)

    # Growing or shrinking the grid, or changing resources, keeps the records valid.
    grown = GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2]").replace("- mlp-small", "- mlp-small\n  - kan-small")
    grown += "resources: {num_cpus: 2}\ncheckpoint_every: 5\ndescription: more\n"
    assert store.grid_differences(grid(tmp_path, grown, "grown.yaml")) == []

    changed = grid(tmp_path, GRID.replace("steps: 4", "steps: 8") + "cql: {cql_alpha: 5}\n", "changed.yaml")
    differences = store.grid_differences(changed)
    assert "settings.steps: 4 -> 8" in differences
    assert "settings.cql.cql_alpha: 10.0 -> 5.0" in differences
    with pytest.raises(BenchError) as info:
        store.check_grid(changed)
    message = str(info.value)
    assert str(store.grid_file) in message and "another name" in message and "--force" in message

    redefined = grid(tmp_path, GRID.replace("'kan[2]'", "'kan[3]'"), "redefined.yaml")
    assert store.grid_differences(redefined) == ["architectures.mine.actor: 'kan[2]' -> 'kan[3]'"]

    # Overrides change the results of their cells; those of datasets or architectures not in the old grid do not.
    overridden = grid(
        tmp_path,
        GRID.replace("- mlp-small", "- mlp-small\n  - kan-small")
        + "dataset_overrides:\n  d4rl:hopper-medium-v2: {normalize_reward: true}\n"
        + "architecture_overrides:\n  mine: {policy_lr: 1e-4}\n  kan-small: {policy_lr: 1e-4}\n",
        "overridden.yaml",
    )
    assert store.grid_differences(overridden) == [
        "architecture_overrides.mine.policy_lr: '(absent)' -> 0.0001",
        "dataset_overrides.d4rl:hopper-medium-v2.normalize_reward: '(absent)' -> True",
    ]
    store.write_grid(overridden)
    assert store.grid_differences(overridden) == []
    assert "dataset_overrides.d4rl:hopper-medium-v2.normalize_reward: True -> '(absent)'" in store.grid_differences(
        spec
    )


def test_write_grid_keeps_inline_architectures_loadable(tmp_path: Path) -> None:
    spec = grid(tmp_path)
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    store.write_grid(spec)
    assert store.grid_file.read_text().startswith("# The resolved grid 'tiny'")
    inline = load_architectures(store.arch_file)
    assert list(inline) == ["mine"] and str(inline["mine"].actor) == "kan[2]"


def test_lock_is_exclusive_and_removed_on_release(tmp_path: Path) -> None:
    out = tmp_path / "cell" / "seed0.json"
    first, second = CellLock(out), CellLock(out)
    assert first.acquire()
    assert is_locked(out)
    assert not second.acquire()
    first.release()
    assert not lock_path(out).exists() and not is_locked(out)
    with second as locked:
        assert locked and is_locked(out)
    assert not is_locked(out)


def test_a_status_probe_does_not_make_a_worker_find_its_cell_busy(tmp_path: Path) -> None:
    out = tmp_path / "seed0.json"
    lock_path(out).touch()
    probe = os.open(lock_path(out), os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # what `is_locked` holds for a moment
    releases = threading.Timer(PROBE_WAIT, os.close, [probe])
    releases.start()
    try:
        with CellLock(out) as locked:
            assert locked
    finally:
        releases.join()


HOLDER = """
import sys, time
from pathlib import Path
from bench.grid.store import CellLock
lock = CellLock(Path(sys.argv[1]))
print("locked" if lock.acquire() else "busy", flush=True)
time.sleep(60)
"""


def test_lock_held_by_another_process_and_dropped_when_it_dies(tmp_path: Path) -> None:
    out = tmp_path / "seed0.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert is_locked(out)
        assert not CellLock(out).acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel releases the flock
        holder.wait()
    deadline = time.monotonic() + 5
    while is_locked(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    with CellLock(out) as locked:
        assert locked
