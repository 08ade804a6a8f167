"""`python -m bench compare A B`: a cell trained again repeats its record; any other outcome or setting is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.compare import compare_results
from bench.train import actor_path, train_group
from tests.d4rl_files import write_small_d4rl_file
from tests.test_train import tiny_config


def train_cells(data: Path, folder: Path) -> list[Path]:
    outs = [folder / "hopper-tiny" / "mlp-small" / f"seed{seed}.json" for seed in (0, 1)]
    train_group(tiny_config(data, steps=4, eval_every=2), [0, 1], outs, progress=False)
    return outs


def edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    data = write_small_d4rl_file(root / "hopper-tiny.hdf5", env="hopper")
    train_cells(data, root / "a")
    train_cells(data, root / "b")
    return root / "a", root / "b"


def dataset_of(folder: Path) -> str:
    return json.loads((folder / "hopper-tiny" / "mlp-small" / "seed0.json").read_text())["cell"]["dataset"]


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_a_cell_trained_again_on_cpu_is_identical(
    trained_twice: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = trained_twice
    assert main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out.splitlines()
    dataset = dataset_of(first)
    assert out[:2] == [f"{dataset} CQL mlp-small seed 0: identical", f"{dataset} CQL mlp-small seed 1: identical"]
    assert "2 cell(s) on both sides, 2 identical, 0 the same run with another outcome, 0 another run" in out[-1]


def test_timings_and_the_device_are_not_the_run(trained_twice: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = trained_twice
    second = copy_of(second, tmp_path)
    record = second / "hopper-tiny" / "mlp-small" / "seed0.json"

    def elsewhere(r: dict) -> None:
        r["seconds_per_epoch"] = [s * 2 for s in r["seconds_per_epoch"]]
        r["started_at"], r["git_commit"], r["config"]["checkpoint_every"] = "2030-01-01T00:00:00", "f" * 40, 7
        r["device"]["name"], r["config"]["device"] = "another CPU", "cuda"

    edit(record, elsewhere)
    assert compare_results(first, second).same


def test_another_outcome_is_named_by_its_first_differing_evaluation(
    trained_twice: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = trained_twice
    second = copy_of(second, tmp_path)
    record = second / "hopper-tiny" / "mlp-small" / "seed1.json"
    original = json.loads(record.read_text())

    def later(r: dict) -> None:
        r["curve"][-1]["normalized_score"] += 1.0
        r["device"] = {"type": "cuda", "name": "a GPU"}

    edit(record, later)
    summary = compare_results(first, second)
    assert not summary.same and summary.count("other outcome") == 1
    last = original["curve"][-1]
    detail = summary.comparisons[1].detail
    assert detail.startswith(f"from the evaluation at step {last['step']:,} on (score ")
    assert "; trained on cpu " in detail and " vs cuda a GPU (torch " in detail

    # Every evaluation equal, the actor's weights not.
    record.write_text(json.dumps(original))
    weights = torch.load(actor_path(record), weights_only=True)
    next(iter(weights.values())).add_(1e-6)
    torch.save(weights, actor_path(record))
    summary = compare_results(first, second)
    assert summary.comparisons[1].kind == "other outcome"
    assert summary.comparisons[1].detail.startswith("every evaluation equal, the final actor weights not")


def test_another_run_is_named_by_its_settings_and_unmatched_cells_are_counted(
    trained_twice: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = trained_twice
    second = copy_of(second, tmp_path)
    edit(second / "hopper-tiny" / "mlp-small" / "seed0.json", lambda r: r["config"]["cql"].update(cql_alpha=1.0))
    (second / "hopper-tiny" / "mlp-small" / "seed1.json").unlink()
    assert main(["compare", str(first), str(second)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{dataset_of(first)} CQL mlp-small seed 0: other run: config.cql.cql_alpha: 10.0 vs 1.0"
    assert "1 cell(s) on both sides, 0 identical, 0 the same run with another outcome, 1 another run" in out[-1]
    assert out[-1].endswith(f"1 cell(s) only in {first}, 0 only in {second}")


def test_a_folder_without_records_or_with_one_cell_twice_is_an_error(
    trained_twice: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = trained_twice
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "coverage.json").write_text("{}")
    assert main(["compare", str(first), str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == f"error: no run records under {tmp_path / 'empty'}\n"

    twice = copy_of(first, tmp_path)
    shutil.copy(twice / "hopper-tiny" / "mlp-small" / "seed0.json", twice / "seed0-copy.json")
    assert main(["compare", str(first), str(twice)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are records of the same cell" in err


def test_a_longer_run_at_a_shorter_runs_budget_is_that_run(
    trained_twice: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = trained_twice
    data = Path(dataset_of(first).removeprefix("local:"))
    longer = tmp_path / "longer" / "hopper-tiny" / "mlp-small"
    train_group(
        tiny_config(data, steps=6, eval_every=2), [0, 1], [longer / "seed0.json", longer / "seed1.json"], progress=False
    )
    assert main(["compare", str(first), str(tmp_path / "longer")]) == 1
    assert "other run: config.steps: 4 vs 6" in capsys.readouterr().out
    assert main(["compare", str(first), str(tmp_path / "longer"), "--at-step", "4"]) == 0
    assert "2 cell(s) on both sides, 2 identical" in capsys.readouterr().out
    # At an earlier step still the same; a step without an evaluation is refused, naming the record.
    assert compare_results(first, tmp_path / "longer", at_step=2).same
    assert main(["compare", str(first), str(tmp_path / "longer"), "--at-step", "3"]) == 2
    assert "no evaluation at step 3" in capsys.readouterr().err
