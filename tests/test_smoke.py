"""The smoke pipeline end to end through the CLI: generate data -> grid (configs/smoke.yaml, shrunk) -> records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.grid.spec import load_grid
from bench.grid.store import ResultsStore

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"


@pytest.mark.slow
def test_smoke_grid_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, results = tmp_path / "smoke-data", tmp_path / "results"
    generate = ["datasets", "generate", "--env", "hopper", "--policy", "random", "--steps", "2000"]
    assert main([*generate, "--local-dir", str(data_dir), "--no-progress"]) == 0
    assert (data_dir / "hopper-random.hdf5").is_file()

    # The shipped smoke grid (architectures, seeds, data, settings) with a test-sized budget.
    grid = yaml.safe_load(SMOKE.read_text())
    grid.update(steps=20, epoch_steps=10, eval_every=20, eval_episodes=1, cql={"batch_size": 64})
    grid_file = tmp_path / "smoke.yaml"
    grid_file.write_text(yaml.safe_dump(grid, sort_keys=False))

    run = ["grid", "run", str(grid_file), "--results", str(results), "--local-dir", str(data_dir)]
    assert main([*run, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "grid smoke: 4/4 cells finished (0 before, 4 done and 0 diverged now), 0 failed" in out

    spec = load_grid(grid_file)
    store = ResultsStore.for_grid(results, spec)
    for cell in spec.cells():
        record = json.loads(store.record_path(cell).read_text())
        assert record["status"] == "done" and record["cell"]["arch"] == cell.arch
        assert record["dataset"]["source"] == "local" and "not D4RL" in record["dataset"]["label"]
        assert [point["step"] for point in record["curve"]] == [20]
    assert yaml.safe_load(store.grid_file.read_text())["datasets"] == ["local:hopper-random"]

    assert main(["grid", "status", str(grid_file), "--results", str(results)]) == 0
    assert "done 4, diverged 0, failed 0, running 0, missing 0 (of 4 cells)" in capsys.readouterr().out
    assert main(run) == 0
    assert "4 finished before, 0 to run" in capsys.readouterr().out
