"""`python -m bench grid adopt`: finished records of another grid stand in for the same runs, and only for those."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import train
from bench.cli import main
from bench.grid.adopt import BEING_TRAINED, NO_RECORD, _drop_finished_checkpoints, adopt_records
from bench.grid.spec import load_grid
from bench.grid.store import CellLock, ResultsStore
from tests.d4rl_files import write_small_d4rl_file
from tests.test_grid_run import comparable, read, tiny_grid

# What adoption changes in a record (besides the wall-clock fields): its grid's overrides and its provenance.
ADOPTION_FIELDS = {"grid_overrides", "adopted_from"}
NET = {"actor": "mlp[8]", "critic": "mlp[8]"}


def same_run(record: dict) -> dict:
    return {k: v for k, v in comparable(record).items() if k not in ADOPTION_FIELDS}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished grid `tiny` (architecture `net`, seeds 0 and 1 side by side) and the data it trained on."""
    folder = tmp_path_factory.mktemp("source")
    data = write_small_d4rl_file(folder / "hopper-tiny.hdf5", env="hopper")
    grid = tiny_grid(folder, [f"local:{data}"], archs=({"net": NET},), seeds=(0, 1), seeds_per_process=2)
    assert main(["grid", "run", str(grid), "--results", str(folder / "results")]) == 0
    return folder / "results" / "tiny", data


def ablation_grid(folder: Path, data: Path, **changes) -> Path:
    """A grid `ablations` with the source's `net` and one more architecture, `wide`."""
    changes.setdefault("seeds_per_process", 2)
    return tiny_grid(
        folder,
        [f"local:{data}"],
        archs=({"net": NET}, {"wide": {"actor": "mlp[16]", "critic": "mlp[8]"}}),
        seeds=(0, 1),
        name="ablations",
        **changes,
    )


def test_adopted_records_are_the_runs_the_grid_would_train(
    source: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, data = source
    grid = ablation_grid(tmp_path, data)
    spec = load_grid(grid)
    results = tmp_path / "results"
    assert main(["grid", "adopt", str(grid), "--from", str(root), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would adopt 2 record(s)" in out and f"2 cell(s): {NO_RECORD}" in out
    assert not (results / "ablations").exists()

    assert main(["grid", "adopt", str(grid), "--from", str(root), "--results", str(results)]) == 0
    assert "adopted 2 record(s)" in capsys.readouterr().out
    store = ResultsStore.for_grid(results, spec)
    for seed in (0, 1):
        adopted = store.record_path(next(c for c in spec.cells() if c.arch == "net" and c.seed == seed))
        original = root / adopted.relative_to(store.root)
        record = read(adopted)
        assert same_run(record) == same_run(read(original))
        assert (store.root / record["adopted_from"]).resolve() == original.resolve()
        assert record["grid_overrides"] == spec.record_overrides(spec.cells()[0])
        assert train.actor_path(adopted).read_bytes() == train.actor_path(original).read_bytes()
    assert main(["grid", "status", str(grid), "--results", str(results)]) == 0
    assert capsys.readouterr().out.count("adopted from ../") == 2

    # The grid trains the other architecture only, and what it would have trained for `net` is what it adopted.
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    assert "2 finished before, 2 to run" in capsys.readouterr().out
    assert main(["grid", "run", str(grid), "--results", str(tmp_path / "trained"), "--architectures", "net"]) == 0
    trained = ResultsStore.for_grid(tmp_path / "trained", spec)
    for cell in spec.cells(("net",)):
        assert same_run(read(trained.record_path(cell))) == same_run(read(store.record_path(cell)))

    # Finished cells are not adopted again.
    assert main(["grid", "adopt", str(grid), "--from", str(root), "--results", str(results)]) == 0
    assert "adopted 0 record(s)" in capsys.readouterr().out


def test_adopting_an_adopted_record_names_the_run_that_trained_it(source: tuple[Path, Path], tmp_path: Path) -> None:
    root, data = source
    results = tmp_path / "results"
    (tmp_path / "first").mkdir()
    first = ablation_grid(tmp_path / "first", data)
    assert main(["grid", "adopt", str(first), "--from", str(root), "--results", str(results)]) == 0
    (tmp_path / "second").mkdir()
    second = tiny_grid(
        tmp_path / "second", [f"local:{data}"], archs=({"net": NET},), seeds=(0, 1), seeds_per_process=2, name="again"
    )
    first_root = ResultsStore.for_grid(results, load_grid(first)).root
    assert main(["grid", "adopt", str(second), "--from", str(first_root), "--results", str(results)]) == 0
    spec = load_grid(second)
    store = ResultsStore.for_grid(results, spec)
    for cell in spec.cells():
        adopted = store.record_path(cell)
        original = root / adopted.relative_to(store.root)
        assert (store.root / read(adopted)["adopted_from"]).resolve() == original.resolve()
        assert same_run(read(adopted)) == same_run(read(original))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"cql": {"batch_size": 8, "cql_n_actions": 2}}, NO_RECORD),
        (
            {"seeds_per_process": 1},
            "the record of this configuration was trained in another group of seeds side by side",
        ),
    ],
)
def test_a_record_of_another_configuration_or_seed_group_is_not_adopted(
    source: tuple[Path, Path], tmp_path: Path, changes: dict, reason: str
) -> None:
    root, data = source
    spec = load_grid(ablation_grid(tmp_path, data, **changes))
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    adoptions = adopt_records(spec, store, root)
    assert [a.source for a in adoptions] == [None] * 4
    assert {a.reason for a in adoptions if a.cell.arch == "net"} == {reason}
    assert not store.root.exists()


def test_an_architecture_of_the_same_name_defined_otherwise_is_not_adopted(
    source: tuple[Path, Path], tmp_path: Path
) -> None:
    root, data = source
    grid = tiny_grid(
        tmp_path, [f"local:{data}"], archs=({"net": {**NET, "actor": "mlp[9]"}},), seeds=(0, 1), seeds_per_process=2
    )
    spec = load_grid(grid)
    adoptions = adopt_records(spec, ResultsStore.for_grid(tmp_path / "results", spec), root)
    assert {a.reason for a in adoptions} == {"the record of this configuration defines net otherwise"}


def test_records_of_other_data_are_not_adopted(source: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = source
    moved = tmp_path / "other" / "results" / "tiny"
    shutil.copytree(root, moved)
    regenerated = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper", seed=1)
    spec = load_grid(ablation_grid(tmp_path, regenerated))
    # The records say the configuration this grid would run (its dataset's path aside), so only the data differs.
    record = next(moved.rglob("net/seed0.json"))
    patched = json.loads(record.read_text())
    patched["config_fingerprint"] = train.config_fingerprint(spec.run_config(spec.cells(("net",))[0]))
    record.write_text(json.dumps(patched))
    adoptions = adopt_records(spec, ResultsStore.for_grid(tmp_path / "results", spec), moved)
    reasons = {a.reason for a in adoptions if a.cell.arch == "net" and a.cell.seed == 0}
    assert reasons == {"the record of this configuration trained on other data than the file holds now"}


def test_a_locked_cell_is_left_to_its_worker_and_a_partial_one_loses_its_checkpoint(
    source: tuple[Path, Path], tmp_path: Path
) -> None:
    root, data = source
    spec = load_grid(ablation_grid(tmp_path, data))
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    seed0, seed1 = (store.record_path(cell) for cell in spec.cells(("net",)))
    checkpoint = train.group_checkpoint_path([seed0, seed1])
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"a killed group's checkpoint")
    with CellLock(seed1):
        adoptions = adopt_records(spec, store, root)
    assert [a.cell.seed for a in adoptions if a.source is not None] == [0]
    assert [a.cell.seed for a in adoptions if a.reason == BEING_TRAINED] == [1]
    assert checkpoint.exists()  # seed 1 would still resume from it
    adoptions = adopt_records(spec, store, root)
    assert [a.cell.seed for a in adoptions if a.source is not None] == [1]
    assert not checkpoint.exists()


def test_a_finished_groups_checkpoint_stays_while_the_group_trains_again(tmp_path: Path) -> None:
    seeds = [tmp_path / f"seed{s}.json" for s in (0, 1)]
    for path in seeds:
        path.write_text(json.dumps({"status": "done"}))
    checkpoint = train.group_checkpoint_path(seeds)
    checkpoint.write_bytes(b"the checkpoint of a --force run over finished records")
    with CellLock(seeds[1]):
        _drop_finished_checkpoints(tmp_path)
    assert checkpoint.exists()
    _drop_finished_checkpoints(tmp_path)
    assert not checkpoint.exists()


def test_adopting_from_the_grids_own_folder_is_refused(
    source: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = source
    grid = root.parent.parent / "tiny.yaml"
    assert main(["grid", "adopt", str(grid), "--from", str(root), "--results", str(root.parent)]) == 2
    assert "this grid's own results folder" in capsys.readouterr().err
