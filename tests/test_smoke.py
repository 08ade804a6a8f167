"""The smoke pipeline end to end through the CLI: generate data -> grid (configs/smoke.yaml, shrunk) -> records."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.data.registry import local_dataset_dir
from bench.grid.spec import load_grid
from bench.grid.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("from_env", [None, "/data/local"], ids=["default", "from-env"])
def test_make_writes_local_data_where_the_cli_reads_it(from_env: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    # `make -n -B`: the commands the targets would run, all of them, none run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k not in ("LOCAL_DATA", "SMOKE_DATA")}
    env.pop("BENCH_LOCAL_DATASET_DIR", None)
    monkeypatch.delenv("BENCH_LOCAL_DATASET_DIR", raising=False)
    if from_env:
        env["BENCH_LOCAL_DATASET_DIR"] = from_env
        monkeypatch.setenv("BENCH_LOCAL_DATASET_DIR", from_env)
    for target in ("smoke", "local-data"):
        done = subprocess.run(
            ["make", "-n", "-B", "--no-print-directory", target], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        folders = re.findall(r"--local-dir (\S+)", done.stdout)
        assert folders and {Path(folder) for folder in folders} == {local_dataset_dir()}, (target, done.stdout)


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
    assert "done 4, diverged 0, failed 0, running 0, partial 0, missing 0 (of 4 cells)" in capsys.readouterr().out
    assert main(run) == 0
    assert "4 finished before, 0 to run" in capsys.readouterr().out
