"""`python -m bench grid run|status|check` on tiny grids: dry run, resume, failures, locks, launchers."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import statistics
from pathlib import Path

import pytest
import torch
import yaml

import bench.grid.run
from bench import train
from bench.cli import main
from bench.errors import BenchError
from bench.grid.launchers import CellOutcome, CellTask, LocalLauncher, RayLauncher, fresh_worker_task
from bench.grid.run import GridResult, Progress
from bench.grid.spec import Cell, Resources, load_grid
from bench.grid.store import CellLock, ResultsStore, error_path, record_differences
from bench.report.build import analyze_folder
from bench.report.records import load_records
from bench.report.tables import score_table
from bench.train import RunConfig
from tests.d4rl_files import write_small_d4rl_file
from tests.interrupts import FirstEpochDiverges, interrupted_on_call

# Wall-clock fields; everything else in a record repeats exactly for the same seed on CPU.
TIMING_FIELDS = {"seconds_per_epoch", "started_at", "finished_at"}


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_d4rl_file(tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5", env="hopper")


def tiny_grid(
    folder: Path,
    datasets: list[str],
    archs: tuple[str | dict, ...] = ("mlp-small",),
    seeds: tuple[int, ...] = (0,),
    **changes,
) -> Path:
    """A grid of a few seconds per cell: 4 gradient steps on batches of 16, one evaluation episode."""
    data = {
        "name": "tiny",
        "architectures": list(archs),
        "datasets": datasets,
        "seeds": list(seeds),
        "steps": 4,
        "epoch_steps": 2,
        "eval_every": 4,
        "eval_episodes": 1,
        "checkpoint_every": 1,
        "device": "cpu",
        "cql": {"batch_size": 16, "cql_n_actions": 2},
        **changes,
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_dry_run_lists_the_cells_and_writes_nothing(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], archs=("mlp-small", "kan-small"), seeds=(0, 1))
    results = tmp_path / "results"
    assert main(["grid", "run", str(grid), "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "2 architectures x 1 datasets x 2 seeds = 4 cells; 4 to run, 0 to skip" in out
    rows = [line for line in out.splitlines() if line[:1].isdigit()]
    assert [row.split()[2:4] for row in rows] == [
        ["mlp-small", "0"],
        ["kan-small", "0"],
        ["mlp-small", "1"],
        ["kan-small", "1"],
    ]
    assert "tiny/local-" in rows[0] and rows[0].rstrip().endswith("mlp-small/seed0.json")
    assert not results.exists()


def test_run_skips_finished_cells_and_reruns_a_corrupt_one(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], archs=("mlp-small", "kan-small"))
    args = ["grid", "run", str(grid), "--results", str(tmp_path / "results"), "--workers", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 cells, 0 finished before, 2 to run (local launcher, 2 worker(s)" in out
    assert "[1/2] done" in out and "[2/2] done" in out and "ETA" in out
    store = ResultsStore(tmp_path / "results" / "tiny")
    spec = load_grid(grid)
    paths = [store.record_path(cell) for cell in spec.cells()]
    first = [read(path) for path in paths]
    assert [r["status"] for r in first] == ["done", "done"]
    assert [r["cell"]["arch"] for r in first] == ["mlp-small", "kan-small"]
    assert first[0]["device"]["torch_threads"] == 1
    assert store.grid_file.exists() and yaml.safe_load(store.grid_file.read_text())["name"] == "tiny"
    assert not list(store.root.rglob("*.lock")) and not list(store.root.rglob("*.ckpt.pt"))

    assert main(["grid", "status", str(grid), "--results", str(tmp_path / "results")]) == 0
    status = capsys.readouterr().out
    assert "done 2, diverged 0, failed 0, running 0, partial 0, missing 0 (of 2 cells)" in status

    assert main(args) == 0
    assert "2 finished before, 0 to run" in capsys.readouterr().out

    paths[1].write_text("garbage, not JSON")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 finished before, 1 to run" in out and "kan-small" in out and "mlp-small" not in out.split("to run")[1]
    assert comparable(read(paths[1])) == comparable(first[1])  # same seed, another process: the same record
    assert read(paths[0]) == first[0]  # untouched


def test_architectures_run_a_part_of_the_grid_first_and_the_rest_later(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], archs=("mlp-small", "kan-small"), seeds=(0, 1))
    args = ["grid", "run", str(grid), "--results", str(tmp_path / "results")]
    assert main([*args, "--dry-run", "--architectures", "kan-small"]) == 0
    out = capsys.readouterr().out
    assert "1 architectures x 1 datasets x 2 seeds = 2 cells (of the grid's 4; the others not selected)" in out
    assert main([*args, "--architectures", "kan-small"]) == 0
    out = capsys.readouterr().out
    assert "2 cells (of the grid's 4; the others not selected), 0 finished before, 2 to run" in out
    store = ResultsStore(tmp_path / "results" / "tiny")
    spec = load_grid(grid)
    assert [store.state(cell).state for cell in spec.cells()] == ["missing", "done", "missing", "done"]
    # The stored grid is the whole grid, so the rest joins the same records later.
    assert yaml.safe_load(store.grid_file.read_text())["architectures"].keys() == {"mlp-small", "kan-small"}
    assert main(args) == 0
    assert "4 cells, 2 finished before, 2 to run" in capsys.readouterr().out
    assert main([*args, "--datasets", f"local:{hopper_file}", "--architectures", "mlp-small,kan-small"]) == 0
    assert "4 cells, 4 finished before, 0 to run" in capsys.readouterr().out

    assert main([*args, "--architectures", "kan-smal"]) == 2
    err = capsys.readouterr().err
    assert "architecture 'kan-smal' is not in grid 'tiny'" in err and "did you mean 'kan-small'?" in err
    assert main([*args, "--dry-run", "--first", "kan-small"]) == 0
    plan = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[0].isdigit()]
    assert [(row[0], row[2], row[3]) for row in plan] == [
        ("1", "kan-small", "0"),
        ("2", "kan-small", "1"),
        ("3", "mlp-small", "0"),
        ("4", "mlp-small", "1"),
    ]
    assert main([*args, "--first", "kan-smal"]) == 2
    assert "architecture 'kan-smal' is not in grid 'tiny'" in capsys.readouterr().err
    assert main([*args, "--datasets", "local:walker2d-medium"]) == 2
    assert "dataset 'local:walker2d-medium' is not in grid 'tiny'" in capsys.readouterr().err


def test_a_failing_cell_does_not_stop_the_others(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "hopper-broken.hdf5"
    broken.write_bytes(b"not an HDF5 file")
    grid = tiny_grid(tmp_path, [f"local:{broken}", f"local:{hopper_file}"])
    args = ["grid", "run", str(grid), "--results", str(tmp_path / "results")]
    assert main(args) == 3
    out = capsys.readouterr().out
    store = ResultsStore(tmp_path / "results" / "tiny")
    bad, good = (store.record_path(cell) for cell in load_grid(grid).cells())
    assert read(good)["status"] == "done"
    assert not bad.exists() and error_path(bad).exists()
    summary = out.split("1 cell(s) failed")[1]
    assert f"error file: {error_path(bad)}" in summary
    assert f"error: {error_path(bad).read_text().splitlines()[0]}" in summary
    assert str(broken) in summary

    assert main(["grid", "status", str(grid), "--results", str(tmp_path / "results")]) == 0
    status = capsys.readouterr().out
    assert "done 1, diverged 0, failed 1, running 0, partial 0, missing 0" in status

    assert main(args) == 3  # the failed cell is retried, the finished one is not
    assert "1 finished before, 1 to run" in capsys.readouterr().out


def crash_on_seed_one(group: tuple[CellTask, ...]) -> list[CellOutcome]:
    """A worker target that segfaults for seed 1 (spawned children import it from this module)."""
    if any(task.cell.seed == 1 for task in group):
        os.kill(os.getpid(), signal.SIGSEGV)
    return [CellOutcome("done", seconds=0.1, final_score=1.0) for _ in group]


def test_a_segfaulting_worker_is_isolated(tmp_path: Path) -> None:
    spec = load_grid(tiny_grid(tmp_path, ["local:hopper-random"], seeds=(0, 1)))
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    tasks = [CellTask(cell, spec.run_config(cell), store.record_path(cell)) for cell in spec.cells()]
    outcomes: dict[int, CellOutcome] = {}
    LocalLauncher(2, target=crash_on_seed_one).run(
        [(task,) for task in tasks], lambda task, outcome: outcomes.update({task.cell.seed: outcome})
    )
    assert outcomes[0].status == "done"
    assert outcomes[1].status == "failed" and "SIGSEGV" in outcomes[1].error
    assert "SIGSEGV" in error_path(store.record_path(spec.cells()[1])).read_text()
    assert store.state(spec.cells()[1]).state == "failed"


def finish_then_crash(group: tuple[CellTask, ...]) -> list[CellOutcome]:
    """A worker target that writes its cells' records and dies before it can report them."""
    for task in group:
        task.out.parent.mkdir(parents=True, exist_ok=True)
        task.out.write_text(json.dumps({"status": "done", "final_score": 3.0}))
    os.kill(os.getpid(), signal.SIGSEGV)
    return []


def test_a_worker_that_dies_after_finishing_its_cell_reports_the_record(tmp_path: Path) -> None:
    spec = load_grid(tiny_grid(tmp_path, ["local:hopper-random"]))
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    cell = spec.cells()[0]
    outcomes: list[CellOutcome] = []
    for force in (False, True):
        task = CellTask(cell, spec.run_config(cell), store.record_path(cell), force=force)
        LocalLauncher(1, target=finish_then_crash).run([(task,)], lambda task, outcome: outcomes.append(outcome))
    # Under --force a finished record may be the one the run was to replace: the cell counts as lost.
    assert [(o.status, o.final_score) for o in outcomes] == [("done", 3.0), ("failed", None)]
    assert "SIGSEGV" in outcomes[1].error and "SIGSEGV" in error_path(store.record_path(cell)).read_text()


def test_a_locked_cell_is_left_to_its_holder(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], seeds=(0, 1))
    results = tmp_path / "results"
    store = ResultsStore(results / "tiny")
    held, free = (store.record_path(cell) for cell in load_grid(grid).cells())
    with CellLock(held) as locked:  # what another grid process training this cell holds
        assert locked
        assert main(["grid", "status", str(grid), "--results", str(results)]) == 0
        assert "running 1, partial 0, missing 1" in capsys.readouterr().out
        assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
        out = capsys.readouterr().out
    assert "busy" in out and "running elsewhere" in out
    assert "1 cell(s) are being trained by another process" in out
    assert not held.exists() and read(free)["status"] == "done"


def test_a_killed_cell_is_partial_until_the_next_run_resumes_it(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = tiny_grid(
        tmp_path, [f"local:{hopper_file}"], seeds=(0, 1), steps=200, epoch_steps=50, eval_every=100, checkpoint_every=1
    )
    results = tmp_path / "results"
    spec = load_grid(grid)
    store = ResultsStore.for_grid(results, spec)
    killed = spec.cells()[0]
    # Killed in its fourth epoch of four: the checkpoint of step 150 stays behind, no record.
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(train._train_epoch, 4))
    with pytest.raises(KeyboardInterrupt):
        train.train_cell(spec.run_config(killed), store.record_path(killed), progress=False)
    monkeypatch.undo()

    assert main(["grid", "status", str(grid), "--results", str(results)]) == 0
    status = capsys.readouterr().out
    row = next(line for line in status.splitlines() if " partial " in line)
    assert "150/200" in row and "resumes from it" in row and row.split()[2] == "0"
    # No final score yet: the checkpoint's latest evaluation (step 100), in parentheses.
    checkpoint = torch.load(train.checkpoint_path(store.record_path(killed)), weights_only=False)
    latest = checkpoint["curve"][-1] if "curve" in checkpoint else checkpoint["records"][0]["curve"][-1]
    assert latest["step"] == 100 and f"({latest['normalized_score']:.1f} at 100)" in row
    assert re.search(r"resumes from it; about \d+s left$", row.rstrip())
    assert "running 0, partial 1, missing 1 (of 2 cells)" in status
    assert re.search(
        r"Time left: about \d+s of training left in 1 started process\(es\) .*; 1 unfinished cell\(s\) without", status
    )
    # The summary: one row for the grid's one dataset and architecture, at its least advanced seed's steps.
    assert main(["grid", "status", str(grid), "--results", str(results), "--summary"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "mlp-small" in line]
    assert len(rows) == 1 and "1 partial, 1 missing" in rows[0]
    assert re.search(rf"0/200 +\({latest['normalized_score']:.1f} at 100\)$", rows[0].rstrip())

    assert main(["grid", "run", str(grid), "--dry-run", "--results", str(results)]) == 0
    plan = capsys.readouterr().out
    assert "2 to run (1 from a checkpoint), 0 to skip" in plan
    assert "resume from step 150" in next(line for line in plan.splitlines() if line.startswith("1 "))
    assert main(["grid", "run", str(grid), "--dry-run", "--force", "--results", str(results)]) == 0
    plan = capsys.readouterr().out
    assert "2 to run, 0 to skip (--force" in plan
    assert "run (--force discards the checkpoint at step 150)" in plan

    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    assert "2 to run, 1 resuming from a checkpoint (local launcher" in capsys.readouterr().out
    assert read(store.record_path(killed))["steps_done"] == 200
    scores = [read(store.record_path(cell))["final_score"] for cell in spec.cells()]
    assert main(["grid", "status", str(grid), "--results", str(results), "--summary"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "mlp-small" in line)
    assert "2 done" in row and "200/200" in row
    assert row.rstrip().endswith(f"{statistics.fmean(scores):.1f} ± {statistics.stdev(scores):.1f}")


@pytest.mark.parametrize("legacy_checkpoint", [False, True])
def test_a_moved_results_folder_resumes_and_records_name_their_arch_file_relatively(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy_checkpoint: bool
) -> None:
    # An inline architecture is read from the results folder's architectures.yaml, by absolute path in the
    # cell's configuration; neither the checkpoint's hash nor the record may depend on where that folder is.
    inline = {"tiny-kan": {"actor": "kan[2]", "critic": "mlp[8]"}}
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], archs=(inline,), steps=8, epoch_steps=2, eval_every=8)
    results = tmp_path / "first" / "results"
    spec = load_grid(grid)
    store = ResultsStore.for_grid(results, spec)
    store.write_grid(spec)
    cell = spec.cells()[0]
    config = spec.run_config(cell, store.arch_file.resolve())
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(train._train_epoch, 3))
    with pytest.raises(KeyboardInterrupt):
        train.train_cell(config, store.record_path(cell), progress=False)
    monkeypatch.undo()
    checkpoint = train.checkpoint_path(store.record_path(cell))
    if legacy_checkpoint:
        # Written before the hash left the arch file's path out: it resumes where it was written.
        state = torch.load(checkpoint, weights_only=False)
        state["config_fingerprint"] = train.group_fingerprint([train.config_fingerprint(config, with_arch_file=True)])
        torch.save(state, checkpoint)
        moved = results
    else:
        moved = tmp_path / "second" / "results"
        moved.parent.mkdir()
        results.rename(moved)
    assert main(["grid", "run", str(grid), "--results", str(moved)]) == 0
    record_path = ResultsStore.for_grid(moved, spec).record_path(cell)
    record = read(record_path)
    assert record["status"] == "done" and record["steps_done"] == 8
    assert [point["step"] for point in record["curve"]] == [8]
    assert record["config"]["arch_file"] == os.path.join("..", "..", "architectures.yaml")
    assert (record_path.parent / record["config"]["arch_file"]).resolve() == (moved / "tiny" / "architectures.yaml")
    assert str(tmp_path) not in record["config"]["arch_file"]


class FinishedElsewhere:
    """A launcher whose every cell another grid process finished after this one planned the run."""

    name = "local"
    parallelism = 1

    def run(self, groups: list[tuple[CellTask, ...]], report) -> None:
        for group in groups:
            for task in group:
                report(task, CellOutcome("skipped", final_score=1.0))


def test_cells_finished_by_another_process_are_counted_once(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.grid.run, "make_launcher", lambda *args: FinishedElsewhere())
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], seeds=(0, 1))
    assert main(["grid", "run", str(grid), "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "2 cells, 0 finished before, 2 to run" in out
    assert "[2/2] skipped" in out
    summary = out.strip().splitlines()[-1]
    assert "2/2 cells finished (0 before, 0 done and 0 diverged now, 2 by another process meanwhile)" in summary


def test_overrides_reach_their_cells_records_and_report(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every episode ends by a terminal, so their returns differ and reward-range normalization has a range.
    plain_file = write_small_d4rl_file(tmp_path / "hopper-plain.hdf5", env="hopper", terminal_episodes={0, 1, 2, 3})
    normalized = tmp_path / "hopper-normalized.hdf5"
    normalized.write_bytes(plain_file.read_bytes())
    grid = tiny_grid(
        tmp_path,
        [f"local:{plain_file}", f"local:{normalized}"],
        archs=("mlp-small", "kan-small"),
        dataset_overrides={f"local:{normalized}": {"normalize_reward": True}},
        architecture_overrides={"kan-small": {"policy_lr": 1e-4}},
    )
    results = tmp_path / "results"
    assert main(["grid", "run", str(grid), "--results", str(results), "--workers", "2"]) == 0
    spec = load_grid(grid)
    store = ResultsStore.for_grid(results, spec)
    for cell in spec.cells():
        record = read(store.record_path(cell))
        expected = {}
        if cell.dataset == f"local:{normalized}":
            expected["normalize_reward"] = True
        if cell.arch == "kan-small":
            expected["cql.policy_lr"] = 1e-4
        assert record["status"] == "done"
        assert record["config"]["normalize_reward"] is ("normalize_reward" in expected)
        assert record["config"]["cql"]["policy_lr"] == expected.get("cql.policy_lr", 3e-5)
        assert record["grid_overrides"]["applied"] == expected
        assert record["grid_overrides"]["dataset_overrides"] == {f"local:{normalized}": {"normalize_reward": True}}
    resolved = yaml.safe_load(store.grid_file.read_text())
    assert resolved["architecture_overrides"] == {"kan-small": {"policy_lr": 1e-4}}
    # Normalized rewards train differently: the same seed on the same transitions gives other critic losses.
    plain, scaled = (read(store.record_path(c)) for c in spec.cells()[:3:2])
    assert plain["losses"]["critic_loss"] != scaled["losses"]["critic_loss"]

    # The report takes the grid's overrides as one configuration, and its settings as the grid-wide ones.
    records = load_records(store.root)
    assert records.mixed_keys == [] and records.config["normalize_reward"] is False
    # Table 1 names every column's and row's setting, and the grid-wide value of the others.
    notes = score_table(analyze_folder(store.root, baseline="mlp-small", reps=50, seed=0)).notes
    assert (
        "Settings per column (the grid's architecture_overrides): kan-small: policy_lr 0.0001; "
        "the other columns at the grid's policy_lr 3e-05."
    ) in notes
    normalized_row = next(n for n in notes if n.startswith("Settings per row"))
    assert "normalize_reward True; the other rows at the grid's normalize_reward False." in normalized_row
    # A record of the same cell from a grid without the override is another configuration.
    other = tmp_path / "mixed"
    (other / "a").mkdir(parents=True)
    (other / "b").mkdir()
    overridden = read(store.record_path(spec.cells()[2]))
    (other / "a" / "seed0.json").write_text(json.dumps(overridden))
    plain_grid = dict(overridden, grid_overrides={}, cell=dict(overridden["cell"], seed=1))
    (other / "b" / "seed1.json").write_text(json.dumps(plain_grid))
    with pytest.raises(BenchError, match="different configurations"):
        load_records(other)


def test_missing_datasets_stop_the_grid_before_any_cell(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}", "d4rl:hopper-medium-v2", "local:walker2d-medium"])
    flags = ["--cache-dir", str(tmp_path / "cache"), "--local-dir", str(tmp_path / "local")]
    for command in (["run", str(grid), "--results", str(tmp_path / "results")], ["check", str(grid)]):
        assert main(["grid", *command, *flags]) == 2
        err = capsys.readouterr().err
        assert "needs 2 dataset(s) that are not here" in err
        assert f"d4rl:hopper-medium-v2: {tmp_path / 'cache' / 'hopper_medium-v2.hdf5'} is missing" in err
        assert "local:walker2d-medium" in err and "datasets fetch hopper-medium-v2" in err and "--base-url" in err
    assert not (tmp_path / "results").exists()

    assert main(["grid", "check", str(tiny_grid(tmp_path, [f"local:{hopper_file}"]))]) == 0
    assert "all 1 datasets are here" in capsys.readouterr().out


def test_results_of_another_configuration_are_not_mixed(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    spec = load_grid(tiny_grid(tmp_path, [f"local:{hopper_file}"]))
    ResultsStore.for_grid(results, spec).write_grid(spec)
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], steps=8)
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "grid.yaml records another configuration" in err and "settings.steps: 4 -> 8" in err
    assert "another name" in err and "--force" in err
    # The dry run says so as a warning; with --force nothing stops the run and every cell would train.
    assert main(["grid", "run", str(grid), "--results", str(results), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "\nWarning, the run would stop: " in plan and "settings.steps: 4 -> 8" in plan
    assert main(["grid", "run", str(grid), "--results", str(results), "--dry-run", "--force"]) == 0
    plan = capsys.readouterr().out
    assert "Warning" not in plan and "(--force: finished cells train again, checkpoints are discarded)" in plan


def test_finished_records_of_other_settings_than_their_cells_are_not_kept_as_done(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    data = [f"local:{hopper_file}"]
    folders = {name: tmp_path / name for name in ("before", "alpha", "redefined")}
    for folder in folders.values():
        folder.mkdir()
    small = {"small": {"actor": "mlp[8]", "critic": "mlp[8]"}}
    before = tiny_grid(folders["before"], data, (small,))
    assert main(["grid", "run", str(before), "--results", str(results)]) == 0
    capsys.readouterr()
    # grid.yaml holds only the last run's configuration: a --force run of a new alpha, killed before any cell
    # finished, leaves it naming the new alpha beside the old records, and check_grid has nothing to object to.
    alpha = {"batch_size": 16, "cql_n_actions": 2, "cql_alpha": 1.0}
    grid = tiny_grid(folders["alpha"], data, (small,), cql=alpha)
    spec = load_grid(grid)
    store = ResultsStore.for_grid(results, spec)
    store.write_grid(spec)
    store.check_grid(spec)
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "1 finished record(s)" in err and "config.cql.cql_alpha: 10.0 -> 1.0" in err and "--force" in err
    assert main(["grid", "run", str(grid), "--results", str(results), "--dry-run"]) == 0
    assert "\nWarning, the run would stop: 1 finished record(s)" in capsys.readouterr().out
    # An architecture dropped from the grid and added back under its name with another definition.
    redefined = tiny_grid(folders["redefined"], data, ({"small": {"actor": "mlp[16]", "critic": "mlp[8]"}},))
    assert main(["grid", "run", str(redefined), "--results", str(results), "--dry-run"]) == 0
    assert "architecture.actor: 'mlp[8]' -> 'mlp[16]'" in capsys.readouterr().out
    # A record written before a setting existed ran with its default and stays valid.
    cell = spec.cells()[0]
    record = read(store.record_path(cell))
    del record["config"]["compile"]
    assert not record_differences(record, load_grid(before).run_config(cell), spec.architectures["small"])
    assert main(["grid", "run", str(grid), "--results", str(results), "--force"]) == 0
    assert read(store.record_path(cell))["config"]["cql"]["cql_alpha"] == 1.0


def test_records_of_regenerated_data_are_not_mixed(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "hopper-data.hdf5"
    data.write_bytes(hopper_file.read_bytes())
    grid = tiny_grid(tmp_path, [f"local:{data}"], seeds=(0, 1))
    args = ["grid", "run", str(grid), "--results", str(tmp_path / "results")]
    assert main(args) == 0
    store = ResultsStore(tmp_path / "results" / "tiny")
    paths = [store.record_path(cell) for cell in load_grid(grid).cells()]
    paths[1].unlink()
    write_small_d4rl_file(data, env="hopper", seed=1)  # regenerated under the same name
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 finished record(s) of grid 'tiny' were trained on other data" in err and str(paths[0]) in err
    assert not paths[1].exists()  # nothing ran
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "1 to run, 1 to skip" in plan and "\nWarning, the run would stop: 1 finished record(s)" in plan
    assert main([*args, "--dry-run", "--force"]) == 0
    plan = capsys.readouterr().out
    assert "2 to run, 0 to skip (--force" in plan and "Warning" not in plan
    assert "run again (--force)" in next(line for line in plan.splitlines() if line.startswith("1 "))
    assert main([*args, "--force"]) == 0
    assert read(paths[0])["dataset"]["sha256"] == read(paths[1])["dataset"]["sha256"]


def test_regenerated_data_of_a_finished_dataset_does_not_block_the_others(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished, pending = tmp_path / "finished.hdf5", tmp_path / "pending.hdf5"
    finished.write_bytes(hopper_file.read_bytes())
    pending.write_bytes(hopper_file.read_bytes())
    grid = tiny_grid(tmp_path, [f"local:{finished}", f"local:{pending}"], seeds=(0, 1))
    args = ["grid", "run", str(grid), "--results", str(tmp_path / "results")]
    assert main(args) == 0
    store = ResultsStore(tmp_path / "results" / "tiny")
    cells = load_grid(grid).cells()
    old = store.record_path(next(cell for cell in cells if cell.dataset == f"local:{finished}"))
    rerun = store.record_path(next(c for c in cells if c.dataset == f"local:{pending}" and c.seed == 1))
    rerun.unlink()
    write_small_d4rl_file(finished, env="hopper", seed=1)  # no cell of this dataset is left to run
    before = old.read_bytes()
    assert main(args) == 0, capsys.readouterr().err
    assert rerun.exists() and old.read_bytes() == before
    write_small_d4rl_file(pending, env="hopper", seed=1)  # now seed 1 would sit beside seed 0 on other data
    rerun.unlink()
    capsys.readouterr()
    assert main(args) == 2
    assert "were trained on other data" in capsys.readouterr().err and not rerun.exists()


def test_ray_needs_resources_the_cluster_has() -> None:
    launcher = RayLauncher(Resources(num_cpus=1, num_gpus=0.25))
    with pytest.raises(BenchError, match="num_gpus"):
        launcher._fit({"CPU": 2.0}, strict=True)
    assert launcher._fit({"CPU": 8.0, "GPU": 1.0}, strict=True) == 4
    assert RayLauncher(Resources(num_cpus=2), workers=1)._fit({"CPU": 8.0}, strict=True) == 1
    # The grid files' fifth of a GPU: five cells a GPU, though 1.0 // 0.2 == 4.0 in floating point.
    fifth = RayLauncher(Resources(num_cpus=1, num_gpus=0.2))
    assert fifth._fit({"CPU": 64.0, "GPU": 1.0}, strict=True) == 5
    assert fifth._fit({"CPU": 64.0, "GPU": 8.0}, strict=True) == 40


def test_ray_warns_when_cells_on_a_gpu_ask_it_for_none(tmp_path: Path) -> None:
    def groups(device: str) -> list[tuple[CellTask, ...]]:
        config = RunConfig(dataset="local:x", arch="mlp", device=device)
        return [(CellTask(Cell("local:x", "mlp", 0), config, tmp_path / "seed0.json"),)]

    gpus, cpus = {"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0}
    unshared = RayLauncher(Resources(num_cpus=1, num_gpus=0))._unshared_gpu_warning
    warning = unshared(groups("auto"), gpus)
    assert warning is not None and "device auto but ask Ray for no GPU (resources.num_gpus: 0" in warning
    assert "every cell trains on the first GPU" in unshared(groups("cuda:1"), cpus)
    assert unshared(groups("auto"), cpus) is None and unshared(groups("cpu"), gpus) is None
    assert RayLauncher(Resources(num_cpus=1, num_gpus=0.2))._unshared_gpu_warning(groups("cuda"), gpus) is None


@pytest.mark.slow
def test_ray_launcher_writes_the_same_records_as_the_local_one(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    # A local instance without token authentication, so Ray writes no token into the user's ~/.ray.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], seeds=(0, 1))
    cells = load_grid(grid).cells()
    local, remote = ResultsStore(tmp_path / "local" / "tiny"), ResultsStore(tmp_path / "ray" / "tiny")
    assert main(["grid", "run", str(grid), "--results", str(tmp_path / "local"), "--workers", "2"]) == 0
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        assert main(["grid", "run", str(grid), "--results", str(tmp_path / "ray"), "--launcher", "ray"]) == 0

        def worker_pid() -> int:
            return os.getpid()

        # Each group in a fresh worker, as the local launcher runs it: a reused one would keep its first GPU and
        # every earlier group's memory and compiled code. Two CPUs a task: one at a time.
        task = fresh_worker_task(ray, worker_pid, Resources(num_cpus=2))
        pids = [ray.get(task.remote()) for _ in range(3)]
        assert len(set(pids)) == 3
    finally:
        ray.shutdown()
    assert "ray launcher" in capsys.readouterr().out
    for cell in cells:
        a, b = read(local.record_path(cell)), read(remote.record_path(cell))
        assert a["status"] == "done"
        assert comparable(a) == comparable(b)


def test_seeds_per_process_trains_each_chunk_of_seeds_as_one_group(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], seeds=(0, 1, 2), seeds_per_process=2)
    spec = load_grid(grid)
    assert [spec.seed_group(cell) for cell in spec.cells()] == [(0, 1), (0, 1), (2,)]
    results = tmp_path / "results"
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "up to 2 seeds side by side per process" in out
    assert "3/3 cells finished (0 before, 3 done and 0 diverged now)" in out
    store = ResultsStore.for_grid(results, spec)
    groups = [read(store.record_path(cell))["group"] for cell in spec.cells()]
    assert groups == [{"seeds": [0, 1], "size": 2}, {"seeds": [0, 1], "size": 2}, {"seeds": [2], "size": 1}]
    assert yaml.safe_load(store.grid_file.read_text())["seeds_per_process"] == 2


def test_a_group_another_process_has_begun_is_busy_as_a_whole_not_split(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], seeds=(0, 1, 2), seeds_per_process=2)
    spec = load_grid(grid)
    results = tmp_path / "results"
    store = ResultsStore.for_grid(results, spec)
    first = store.record_path(spec.cells()[0])
    # Another grid process has taken group (0, 1) and not yet reached its seeds' own locks: this one must not
    # lock seed 1 (or 0) and train it as a group of its own.
    with CellLock(first.with_name("seed0+seed1.json")) as locked:
        assert locked
        assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
        out = capsys.readouterr().out
    assert "2 cell(s) are being trained by another process" in out
    assert [store.record_path(cell).exists() for cell in spec.cells()] == [False, False, True]
    assert not list(first.parent.glob("*.lock"))  # every lock this run took is gone
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    assert [read(store.record_path(cell))["group"]["seeds"] for cell in spec.cells()] == [[0, 1], [0, 1], [2]]


def test_seeds_per_process_of_one_run_packs_its_groups_and_leaves_the_grid_file_as_it_is(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tiny_grid(tmp_path, [f"local:{hopper_file}"], seeds=(0, 1, 2), seeds_per_process=3)
    spec = load_grid(grid)
    results = tmp_path / "results"
    args = ["grid", "run", str(grid), "--results", str(results), "--seeds-per-process", "2"]
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "; up to 2 seeds side by side per process (--seeds-per-process)" in plan
    rows = [line.split() for line in plan.splitlines() if line[:1].isdigit()]
    assert [(row[3], row[6]) for row in rows] == [("0", "0,1"), ("1", "0,1"), ("2", "2")]
    assert main(["grid", "run", str(grid), "--results", str(results), "--dry-run"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    assert [row[6] for row in rows] == ["0,1,2"] * 3
    assert not results.exists()
    assert main(args) == 0
    assert "up to 2 seeds side by side per process" in capsys.readouterr().out
    store = ResultsStore.for_grid(results, spec)
    groups = [read(store.record_path(cell))["group"]["seeds"] for cell in spec.cells()]
    assert groups == [[0, 1], [0, 1], [2]]
    # The grid file's packing is what grid.yaml keeps; each record says how it was trained.
    assert yaml.safe_load(store.grid_file.read_text())["seeds_per_process"] == 3
    with pytest.raises(BenchError, match="--seeds-per-process must be at least 1, got 0"):
        bench.grid.run.run_grid(spec, results=results, seeds_per_process=0, progress=False)
    assert main(["grid", "run", str(grid), "--results", str(results), "--dry-run", "--seeds-per-process", "0"]) == 2
    assert "--seeds-per-process must be at least 1, got 0" in capsys.readouterr().err


def killed_group(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epochs: int
) -> tuple[Path, Path, list[Path]]:
    """A grid of two seeds side by side whose group was killed after `epochs` epochs of 50 steps (of 4): the grid
    file, its results folder and the two records' paths."""
    grid = tiny_grid(
        tmp_path, [f"local:{hopper_file}"], seeds=(0, 1), steps=200, epoch_steps=50, eval_every=200, seeds_per_process=2
    )
    results = tmp_path / "results"
    spec = load_grid(grid)
    paths = [ResultsStore.for_grid(results, spec).record_path(cell) for cell in spec.cells()]
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(train._train_epoch, epochs + 1))
    with pytest.raises(KeyboardInterrupt):
        train.train_group(spec.run_config(spec.cells()[0]), [0, 1], paths, progress=False)
    monkeypatch.undo()
    return grid, results, paths


def test_seeds_per_process_refuses_to_leave_a_started_groups_checkpoint(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grid, results, paths = killed_group(hopper_file, tmp_path, monkeypatch, epochs=1)
    checkpoint = train.group_checkpoint_path(paths)
    assert checkpoint.exists()
    assert main(["grid", "run", str(grid), "--results", str(results), "--seeds-per-process", "1", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "\nWarning, the run would stop: " in plan and checkpoint.name in plan and "would start over" in plan
    assert "side by side with seeds" not in plan  # one seed per process: no groups to show
    assert main(["grid", "run", str(grid), "--results", str(results), "--seeds-per-process", "1"]) == 2
    err = capsys.readouterr().err
    assert checkpoint.name in err and "at step 50" in err and "would start over" in err
    assert checkpoint.exists() and not any(path.exists() for path in paths)
    # The grid file's own packing resumes it.
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    assert "2 resuming from a checkpoint" in capsys.readouterr().out


def test_a_killed_group_is_partial_and_resumes_as_a_group(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grid, results, paths = killed_group(hopper_file, tmp_path, monkeypatch, epochs=3)
    spec = load_grid(grid)
    assert main(["grid", "status", str(grid), "--results", str(results)]) == 0
    status = capsys.readouterr().out
    assert "running 0, partial 2, missing 0 (of 2 cells)" in status
    # The two seeds share one process and one checkpoint: its time left counts once.
    assert "left in 1 started process(es)" in status and "without a checkpoint" not in status
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    assert "2 to run, 2 resuming from a checkpoint" in capsys.readouterr().out
    reference = train.train_group(
        spec.run_config(spec.cells()[0]), [0, 1], [tmp_path / "ref" / p.name for p in paths], progress=False
    )
    for path, expected in zip(paths, reference, strict=True):
        got = read(path)
        assert got["steps_done"] == 200 and got["curve"] == expected["curve"]


def test_a_group_killed_after_one_seed_diverged_resumes_with_that_seed_along(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    diverges = FirstEpochDiverges(train._train_epoch)

    grid = tiny_grid(
        tmp_path, [f"local:{hopper_file}"], seeds=(0, 1), steps=200, epoch_steps=50, eval_every=200, seeds_per_process=2
    )
    spec = load_grid(grid)
    results = tmp_path / "results"
    paths = [ResultsStore.for_grid(results, spec).record_path(cell) for cell in spec.cells()]
    config = spec.run_config(spec.cells()[0])
    monkeypatch.setattr(train, "_train_epoch", diverges)
    reference = train.train_group(config, [0, 1], [tmp_path / "ref" / p.name for p in paths], progress=False)
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(diverges.restart(), 4))
    with pytest.raises(KeyboardInterrupt):
        train.train_group(config, [0, 1], paths, progress=False)
    monkeypatch.undo()
    diverged = paths[0].read_bytes()
    checkpoint = train.group_checkpoint_path(paths)
    assert checkpoint.exists() and json.loads(diverged)["status"] == "diverged"
    assert main(["grid", "run", str(grid), "--results", str(results), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    rows = [line.split() for line in plan.splitlines() if line[:1].isdigit()]
    assert [(row[4], row[5], row[-2]) for row in rows] == [("diverged", "skip", "0,1"), ("partial", "resume", "0,1")]
    assert "skip (trains along, its record kept)" in plan
    assert "Warning" not in plan
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "1 finished before, 1 to run, 1 resuming from a checkpoint" in out
    assert "2/2 cells finished (1 before, 1 done and 0 diverged now)" in out
    assert paths[0].read_bytes() == diverged and not checkpoint.exists()
    resumed = read(paths[1])
    for key in ("status", "steps_done", "curve", "diagnostics", "losses", "group"):
        assert resumed[key] == reference[1][key], key


def test_a_started_group_the_grid_file_now_packs_otherwise_is_not_left_behind(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    grid, results, paths = killed_group(hopper_file, tmp_path, monkeypatch, epochs=1)
    data = yaml.safe_load(grid.read_text())
    grid.write_text(yaml.safe_dump({**data, "seeds_per_process": 1}, sort_keys=False))
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "seed0+seed1.ckpt.pt" in err and "would start over" in err and "seeds_per_process to resume it" in err
    assert not any(path.exists() for path in paths)


def test_eta_counts_each_algorithms_cells_at_its_own_pace_and_resumed_cells_at_their_records_pace(
    tmp_path: Path,
) -> None:
    cells = [Cell("local:x", "mlp", seed, algo) for algo in ("bc", "iql") for seed in range(4)]
    tasks = [
        CellTask(cell, RunConfig(dataset="local:x", arch="mlp"), tmp_path / f"{i}.json") for i, cell in enumerate(cells)
    ]
    launcher = LocalLauncher(workers=1)
    resumed = [cells[1], cells[2]]
    progress = Progress(GridResult(total=8), launcher, ResultsStore(tmp_path), io.StringIO(), tasks, resumed)
    progress(tasks[0], CellOutcome("done", seconds=10.0, final_score=1.0))
    # Until an IQL cell finishes, its cells are priced at the BC pace: 7 cells x 10 s.
    assert progress.eta() == "1m10s"
    # Resumed, half trained before: its record's epochs of both starts count (6 + 8 s), not this run's 1 s.
    tasks[1].out.write_text(json.dumps({"status": "done", "seconds_per_epoch": [6.0, 8.0]}))
    progress(tasks[1], CellOutcome("done", seconds=1.0, final_score=1.0))
    assert progress.eta() == "1m12s"  # 6 cells x 12 s
    progress(tasks[2], CellOutcome("done", seconds=1.0, final_score=1.0))  # resumed, no readable record: left out
    assert progress.eta() == "1m00s"
    progress(tasks[4], CellOutcome("done", seconds=100.0, final_score=1.0))
    # 1 BC cell x 12 s + 3 IQL cells x 100 s.
    assert progress.eta() == "5m12s"
    for task in tasks[3:4] + tasks[5:]:
        progress(task, CellOutcome("done", seconds=100.0, final_score=1.0))
    assert progress.eta() == "0s" and "[8/8] done" in progress.out.getvalue()


def test_status_sizes_the_cells_not_started_at_the_pace_of_the_grids_finished_groups(tmp_path: Path) -> None:
    from bench.grid.run import _time_left_line
    from bench.grid.store import CellState

    grid = tiny_grid(
        tmp_path,
        ["local:hopper-medium", "local:hopper-medium-replay", "local:walker2d-medium"],
        seeds=(0, 1, 2, 3),
        steps=1000,
        epoch_steps=500,
        eval_every=500,
        seeds_per_process=2,
    )
    spec = load_grid(grid)

    def finished(cell: Cell, seconds: list[float], seeds: list[int]) -> CellState:
        record = {"seconds_per_epoch": seconds, "steps_done": 1000, "group": {"seeds": seeds, "size": len(seeds)}}
        return CellState(cell, tmp_path / "x.json", "done", record=record)

    states = []
    for cell in spec.cells():
        if cell.dataset == "local:hopper-medium":  # both groups finished: 100 s and 300 s per 1,000 steps
            seconds = [50.0, 50.0] if cell.seed < 2 else [150.0, 150.0]
            states.append(finished(cell, seconds, [0, 1] if cell.seed < 2 else [2, 3]))
        else:
            states.append(CellState(cell, tmp_path / "x.json", "missing"))
    line = _time_left_line(spec, states)
    # hopper-medium-replay's two groups of two at the median pace of hopper's finished groups (200 s each); walker2d
    # has no finished group of its kind, so its four cells are left to `grid estimate`.
    assert line == (
        "Time left: 8 unfinished cell(s) without a checkpoint: about 6m40s of process time in 2 process(es), at the "
        "pace of the grid's finished groups of the same algorithm, architecture, environment and size, and 4 cell(s) "
        "of a kind none has finished (`grid estimate` sizes them)."
    )
    # Nothing finished: as before, the cells are `grid estimate`'s to size.
    missing = [CellState(cell, tmp_path / "x.json", "missing") for cell in spec.cells()]
    assert _time_left_line(spec, missing) == (
        "Time left: 12 unfinished cell(s) without a checkpoint (`grid estimate` sizes them)."
    )
