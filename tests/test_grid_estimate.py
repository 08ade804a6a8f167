"""`python -m bench grid estimate`: which groups a grid still has to run, their timed cost, and the schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from bench.agents.cql import CQL
from bench.cli import main
from bench.data.registry import dataset_env
from bench.errors import BenchError
from bench.grid.estimate import (
    GroupPlan,
    Timing,
    group_seconds,
    plan_groups,
    schedule,
    time_group,
    timing_device,
)
from bench.grid.spec import Cell, load_grid
from bench.grid.store import ResultsStore
from bench.train import device_info
from tests.devices import needs_cuda
from tests.test_grid_run import tiny_grid


def write_grid(folder: Path, **changes) -> Path:
    """test_grid_run's tiny grid with two seed groups per architecture and a budget with two evaluations."""
    return tiny_grid(
        folder,
        ["local:hopper-medium"],
        archs=("mlp-small", "kan-small"),
        seeds=(0, 1, 2, 3),
        **{"name": "sizing", "seeds_per_process": 2, "steps": 1_000, "epoch_steps": 100, "eval_every": 500, **changes},
    )


def test_schedule_puts_each_group_on_the_first_free_worker() -> None:
    assert schedule([3.0, 1.0, 1.0, 1.0], workers=2) == 3.0
    assert schedule([1.0, 1.0, 3.0], workers=2) == 4.0  # in order: the long one starts last
    assert schedule([2.0, 2.0, 2.0], workers=1) == 6.0
    assert schedule([5.0], workers=8) == 5.0
    with pytest.raises(BenchError, match="workers must be at least 1"):
        schedule([1.0], workers=0)


@pytest.mark.parametrize(
    ("dataset", "env"),
    [
        ("d4rl:walker2d-medium-v2", "walker2d"),
        ("local:hopper-medium", "hopper"),
        ("local:/data/halfcheetah-expert.hdf5", "halfcheetah"),
        ("minari:mujoco/hopper/medium-v0", "hopper"),
    ],
)
def test_dataset_env_reads_the_environment_from_the_name(dataset: str, env: str) -> None:
    assert dataset_env(dataset).name == env


def test_dataset_env_names_an_unknown_environment() -> None:
    with pytest.raises(BenchError, match="cannot tell its environment"):
        dataset_env("local:antmaze-umaze")


def test_plan_leaves_out_finished_cells_and_subtracts_a_checkpoints_steps(tmp_path: Path) -> None:
    spec = load_grid(write_grid(tmp_path))
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    for seed in (0, 1):  # mlp-small's first seed group is finished
        path = store.record_path(Cell("local:hopper-medium", "mlp-small", seed))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "done"}))
    resumed = store.record_path(Cell("local:hopper-medium", "kan-small", 2))
    resumed.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"records": [{"steps_done": 400}, {"steps_done": 400}]}, resumed.parent / "seed2+seed3.ckpt.pt")

    plans = plan_groups(spec, store)
    assert [(p.arch, p.seeds, p.steps_left) for p in plans] == [
        ("kan-small", (0, 1), 1_000),
        ("mlp-small", (2, 3), 1_000),
        ("kan-small", (2, 3), 600),
    ]
    assert len(plan_groups(spec, None)) == 4  # the whole grid


def test_plan_of_a_selection_keeps_those_architectures_as_grid_run_would(tmp_path: Path) -> None:
    spec = load_grid(write_grid(tmp_path))
    plans = plan_groups(spec, None, architectures=["kan-small"])
    assert [(p.arch, p.seeds) for p in plans] == [("kan-small", (0, 1)), ("kan-small", (2, 3))]
    assert plan_groups(spec, None, datasets=["local:hopper-medium"]) == plan_groups(spec, None)
    with pytest.raises(BenchError, match=r"architecture 'kan-smal' is not in grid 'sizing'.*did you mean 'kan-small'"):
        plan_groups(spec, None, architectures=["kan-smal"])


def test_first_moves_those_architectures_groups_ahead_and_keeps_the_grids_order_in_each_part(tmp_path: Path) -> None:
    spec = load_grid(write_grid(tmp_path))
    whole = [(p.arch, p.seeds) for p in plan_groups(spec, None)]
    assert whole == [("mlp-small", (0, 1)), ("kan-small", (0, 1)), ("mlp-small", (2, 3)), ("kan-small", (2, 3))]
    first = [(p.arch, p.seeds) for p in plan_groups(spec, None, first=["kan-small"])]
    assert first == [("kan-small", (0, 1)), ("kan-small", (2, 3)), ("mlp-small", (0, 1)), ("mlp-small", (2, 3))]
    assert spec.cells(first=["kan-small"]) == sorted(spec.cells(), key=lambda cell: cell.arch != "kan-small")
    assert spec.cells(first=["mlp-small", "kan-small"]) == spec.cells()
    with pytest.raises(BenchError, match=r"architecture 'kan-smal' is not in grid 'sizing'"):
        spec.cells(first=["kan-smal"])


def test_group_seconds_counts_training_and_the_evaluations_left(tmp_path: Path) -> None:
    spec = load_grid(write_grid(tmp_path))
    plan = plan_groups(spec, None)[0]
    timing = Timing(steps_per_second=10.0, eval_step_seconds=0.001)
    # 1,000 steps at 10/s, then 2 evaluations (steps 500 and 1,000) x 2 seeds x 1,000-step episodes x 1 ms.
    assert group_seconds(plan, spec, timing) == pytest.approx(100.0 + 4.0)
    resumed = GroupPlan(plan.algo, plan.dataset, plan.arch, plan.seeds, 400, plan.config)
    assert group_seconds(resumed, spec, timing) == pytest.approx(40.0 + 2.0)  # only the evaluation at 1,000


def test_estimate_times_each_kind_of_process_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_grid(
        tmp_path,
        architectures=["mlp-small", "kan-small", {"kan-fast": {"actor": "kan[4]", "critic": "mlp[64,64]"}}],
        architecture_overrides={"kan-fast": {"policy_lr": 1.0e-4}},
    )
    assert main(["grid", "estimate", str(grid), "--seconds", "0.05", "--workers", "2", "--all"]) == 0
    out = capsys.readouterr().out
    # kan-fast is kan-small's networks at another learning rate: its two groups reuse kan-small's timing.
    assert out.count("timing cql") == 2
    rows = [line for line in out.splitlines() if line.startswith("CQL ")]
    assert len(rows) == 6
    assert "grid sizing: 6 process(es), 12 cell(s) to run" in out
    assert "with 2 worker(s) x 1 thread(s) about" in out
    assert f"(timed on {device_info(torch.device('cpu'))['name']})" in out

    assert main(["grid", "estimate", str(grid), "--seconds", "0.05", "--all", "--architectures", "kan-fast"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[2] for line in out.splitlines() if line.startswith("CQL ")] == ["kan-fast", "kan-fast"]
    assert "grid sizing: 2 process(es), 4 cell(s) to run" in out


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_grid_for_a_gpu_is_timed_on_the_cpu_of_a_machine_without_one(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, note = timing_device(name)
    assert device == torch.device("cpu")
    assert note == f"timed on the CPU; the grid asks for {name}, which this machine does not have"
    assert timing_device("auto")[0] == torch.device("cpu")


@needs_cuda
def test_a_grid_for_the_gpu_is_timed_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = write_grid(tmp_path, device="auto", compile=True)
    assert main(["grid", "estimate", str(grid), "--seconds", "0.5", "--all"]) == 0
    out = capsys.readouterr().out
    assert f"(timed on {torch.cuda.get_device_name(torch.device('cuda'))})" in out
    assert len([line for line in out.splitlines() if line.startswith("CQL ")]) == 4


def test_a_compiled_groups_graphs_are_dropped_once_it_is_timed(tmp_path: Path) -> None:
    spec = load_grid(write_grid(tmp_path, architectures=["mlp-small"], seeds_per_process=4, compile=True))
    (plan,) = plan_groups(spec, None)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    time_group(plan, spec, seconds=0.01)
    # The update ran compiled and left nothing in dynamo's cache behind it.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs
    assert _debug_get_cache_entry_list(CQL._update_step.__code__) == []
