"""The results store: record paths, cell states, grid.yaml mixing checks, and cell locks across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.grid.spec import Cell, GridSpec, load_grid
from bench.grid.store import CellLock, ResultsStore, error_path, is_locked, lock_path, write_error
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
