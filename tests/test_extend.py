"""A longer run started from a shorter run's final state: on CPU, the records of the longer run from scratch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from bench import train
from bench.agents.iql import IQLConfig
from bench.agents.registry import ALGORITHMS
from bench.cli import main
from bench.errors import BenchError
from bench.grid.estimate import plan_groups
from bench.grid.spec import Cell, dataset_slug, load_grid
from bench.grid.store import CellLock, ResultsStore
from bench.nets.spec import get_architecture
from bench.train import actor_path, final_state_path, train_group
from tests import test_train as train_tests
from tests.d4rl_files import write_small_d4rl_file
from tests.interrupts import FirstEpochDiverges, interrupted_on_call
from tests.test_grid_run import tiny_grid
from tests.test_train import comparable
from tests.test_train_group import random_batch

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_d4rl_file(tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5", env="hopper")


def tiny_config(path: Path, **changes) -> train.RunConfig:
    """test_train's tiny cell with a KAN actor, evaluated every 2 steps, so every epoch's end may be extended."""
    return train_tests.tiny_config(path, **{"arch": "kan-small", "eval_every": 2, **changes})


def outs(folder: Path) -> list[Path]:
    return [folder / f"seed{seed}.json" for seed in SEEDS]


def shorter_run(hopper_file: Path, folder: Path, steps: int = 4, **changes) -> Path:
    """Train the group for `steps` keeping its final state; the state's path."""
    train_group(
        tiny_config(hopper_file, steps=steps, **changes), SEEDS, outs(folder), progress=False, keep_final_state=True
    )
    return final_state_path(outs(folder))


def without_extension(record: dict) -> dict:
    return {k: v for k, v in comparable(record).items() if k != "extended_from"}


def test_an_extended_run_writes_the_records_of_the_longer_run_trained_from_scratch(
    hopper_file: Path, tmp_path: Path
) -> None:
    longer = tiny_config(hopper_file, steps=8)
    reference = train_group(longer, SEEDS, outs(tmp_path / "ref"), progress=False)
    assert not list((tmp_path / "ref").glob("*.final.pt"))  # kept only when asked for
    state = shorter_run(hopper_file, tmp_path / "short")
    assert state.name == "seed0+seed1.final.pt" and state.exists()
    assert not train.group_checkpoint_path(outs(tmp_path / "short")).exists()

    extended = train_group(longer, SEEDS, outs(tmp_path / "long"), progress=False, extend_from=state)
    assert [without_extension(r) for r in extended] == [comparable(r) for r in reference]
    for record, out in zip(extended, outs(tmp_path / "long"), strict=True):
        assert record["extended_from"] == {"state": "../short/seed0+seed1.final.pt", "steps": 4}
        assert json.loads(out.read_text()) == record
        assert record["steps_done"] == 8 and [point["step"] for point in record["curve"]] == [2, 4, 6, 8]
    for ref_out, out in zip(outs(tmp_path / "ref"), outs(tmp_path / "long"), strict=True):
        expected, actor = torch.load(actor_path(ref_out)), torch.load(actor_path(out))
        assert all(torch.equal(expected[name], actor[name]) for name in expected)
    assert state.exists()  # the shorter run's state stays: another extension may start from it


def test_an_extension_killed_before_it_ends_resumes_to_the_same_records(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = shorter_run(hopper_file, tmp_path / "short")
    longer = tiny_config(hopper_file, steps=8, checkpoint_every=1)
    reference = train_group(longer, SEEDS, outs(tmp_path / "ref"), progress=False, extend_from=state)
    real = train._train_epoch
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(real, 2))  # after the epoch ending at step 6
    with pytest.raises(KeyboardInterrupt):
        train_group(longer, SEEDS, outs(tmp_path / "killed"), progress=False, extend_from=state)
    assert train.group_checkpoint_path(outs(tmp_path / "killed")).exists()
    monkeypatch.setattr(train, "_train_epoch", real)
    resumed = train_group(longer, SEEDS, outs(tmp_path / "killed"), progress=False, extend_from=state)
    assert [comparable(r) for r in resumed] == [comparable(r) for r in reference]


def test_a_seed_that_diverged_in_the_shorter_run_gets_its_diverged_record_in_the_longer_one(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diverges = FirstEpochDiverges(train._train_epoch)
    monkeypatch.setattr(train, "_train_epoch", diverges)
    reference = train_group(tiny_config(hopper_file, steps=8), SEEDS, outs(tmp_path / "ref"), progress=False)
    monkeypatch.setattr(train, "_train_epoch", diverges.restart())
    state = shorter_run(hopper_file, tmp_path / "short")
    monkeypatch.setattr(train, "_train_epoch", diverges.restart())
    extended = train_group(
        tiny_config(hopper_file, steps=8), SEEDS, outs(tmp_path / "long"), progress=False, extend_from=state
    )
    assert diverges.epochs == 2  # steps 4 to 8 only
    assert [r["status"] for r in extended] == ["diverged", "done"]
    assert [without_extension(r) for r in extended] == [comparable(r) for r in reference]
    assert json.loads(outs(tmp_path / "long")[0].read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    ("changes", "seeds", "message"),
    [
        ({"steps": 4}, SEEDS, r"at step 4; a run that extends it needs more steps than that, not 4"),
        ({"steps": 8, "eval_episodes": 1}, SEEDS, r"was not trained with this run's configuration and 4 steps"),
        ({"steps": 8, "arch": "mlp-small"}, SEEDS, r"was not trained with this run's configuration"),
        ({"steps": 8}, [0], r"holds 2 seed\(s\) and this run trains 1 of kan-small"),
        ({"steps": 8}, [1, 0], r"was not trained with this run's configuration and 4 steps \(seeds 1, 0 of"),
        (
            {"steps": 8, "algo": "iql", "iql": IQLConfig(batch_size=16)},
            SEEDS,
            r"IQL runs cannot be extended .*cosine schedule over the run's steps",
        ),
    ],
    ids=["same-budget", "other-setting", "other-architecture", "fewer-seeds", "other-seed-order", "iql"],
)
def test_a_run_that_is_not_the_state_continued_is_refused(
    hopper_file: Path, tmp_path: Path, changes: dict, seeds: list[int], message: str
) -> None:
    state = shorter_run(hopper_file, tmp_path / "short")
    config = tiny_config(hopper_file, **changes)
    folder = tmp_path / "long"
    with pytest.raises(BenchError, match=message):
        train_group(config, seeds, [folder / f"seed{s}.json" for s in seeds], progress=False, extend_from=state)
    assert not folder.exists() or not list(folder.iterdir())


def test_a_state_whose_step_a_longer_run_does_not_evaluate_is_refused(hopper_file: Path, tmp_path: Path) -> None:
    state = shorter_run(hopper_file, tmp_path / "short", steps=6, eval_every=4)
    config = tiny_config(hopper_file, steps=12, eval_every=4)
    with pytest.raises(BenchError, match=r"at step 6, not a multiple of eval_every \(4\)"):
        train_group(config, SEEDS, outs(tmp_path / "long"), progress=False, extend_from=state)


def test_a_state_of_other_data_is_refused(hopper_file: Path, tmp_path: Path) -> None:
    other = write_small_d4rl_file(tmp_path / "other" / hopper_file.name, env="hopper", seed=1)
    state = shorter_run(other, tmp_path / "short")
    with pytest.raises(BenchError, match=r"final state .* was trained on other data .*without extending it"):
        train_group(
            tiny_config(hopper_file, steps=8), SEEDS, outs(tmp_path / "long"), progress=False, extend_from=state
        )


def test_run_cli_keeps_a_final_state_and_extends_it(hopper_file: Path, tmp_path: Path, capsys) -> None:
    argv = ["run", "--dataset", f"local:{hopper_file}", "--arch", "mlp-small", "--seeds", "0-1", "--steps", "2"]
    argv += ["--epoch-steps", "2", "--eval-every", "2", "--eval-episodes", "1", "--device", "cpu", "--no-progress"]
    argv += ["--set", "batch_size=8", "--set", "cql_n_actions=2"]
    assert main([*argv, "--out", str(tmp_path / "short"), "--keep-final-state"]) == 0
    state = tmp_path / "short" / "seed0+seed1.final.pt"
    assert state.exists()
    longer = [*argv[:8], "4", *argv[9:]]
    assert main([*longer, "--out", str(tmp_path / "long"), "--extend-from", str(state)]) == 0
    record = json.loads((tmp_path / "long" / "seed1.json").read_text())
    assert record["steps_done"] == 4 and record["extended_from"]["steps"] == 2
    assert not list((tmp_path / "long").glob("*.final.pt"))
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "again"), "--extend-from", str(state)]) == 2
    assert "needs more steps than that, not 2" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_only_the_algorithms_that_declare_a_budget_dependence_update_differently_under_another_budget(
    name: str,
) -> None:
    """What makes an extension the longer run: an update that ignores the budget. An algorithm that gains a
    schedule over the run's steps must say so (`Algorithm.budget_dependence`), or extensions would be wrong."""
    algorithm = ALGORITHMS[name]
    arch = get_architecture("mlp-small")
    agents = []
    for budget in (6, 1_000_000):
        torch.manual_seed(0)
        agents.append(algorithm.agent(11, 3, arch, algorithm.config(), run_steps=budget))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = random_batch(1, 8, generator)
        losses = [agent.update(batch) for agent in agents]
    same = torch.equal(*losses) and all(
        torch.equal(a, b) for a, b in zip(agents[0].actor.parameters(), agents[1].actor.parameters(), strict=True)
    )
    assert same != bool(algorithm.budget_dependence)


def test_a_grid_that_extends_another_starts_each_group_from_its_final_state_and_writes_the_longer_records(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, results = [f"local:{hopper_file}"], tmp_path / "results"
    grid = dict(seeds=(0, 1, 2), seeds_per_process=2, eval_every=2)
    for name in ("short", "long", "ref"):
        (tmp_path / name).mkdir()
    short = tiny_grid(tmp_path / "short", data, name="short", keep_final_state=True, **grid)
    longer = tiny_grid(tmp_path / "long", data, name="long", steps=8, extends="short", **grid)
    reference = tiny_grid(tmp_path / "ref", data, name="ref", steps=8, **grid)
    assert main(["grid", "run", str(longer), "--results", str(results)]) == 2
    assert "results/short holds no grid's records (grid.yaml)" in capsys.readouterr().err
    assert main(["grid", "run", str(short), "--results", str(results)]) == 0
    cells = results / "short" / dataset_slug(data[0]) / "mlp-small"
    assert sorted(p.name for p in cells.glob("*.final.pt")) == ["seed0+seed1.final.pt", "seed2.final.pt"]
    (cells / "seed2.final.pt").unlink()  # seed 2's group trains from step 0
    capsys.readouterr()

    assert main(["grid", "status", str(longer), "--results", str(results)]) == 0
    status = capsys.readouterr().out
    assert status.count("extends short's final state at step 4") == 2 and "about" in status
    store = ResultsStore.for_grid(results, load_grid(longer))
    plans = plan_groups(load_grid(longer), store)
    assert [(plan.seeds, plan.steps_left) for plan in plans] == [((0, 1), 4), ((2,), 8)]
    lock = CellLock(store.record_path(Cell(data[0], "mlp-small", 0)))
    assert lock.acquire()  # being trained, before its first checkpoint: its time left counts from the state's step
    try:
        state = store.state(Cell(data[0], "mlp-small", 0), probe_lock=True)
        assert state.state == "running" and state.extends is not None and state.extends.steps == 4
    finally:
        lock.release()
    assert main(["grid", "run", str(longer), "--results", str(results), "--dry-run"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    assert ["extend from step 4" in row for row in rows] == [True, True, False]
    assert main(["grid", "run", str(longer), "--results", str(results)]) == 0
    assert "2 extending grid short's final states" in capsys.readouterr().out
    assert main(["grid", "run", str(reference), "--results", str(results)]) == 0
    for seed in (0, 1, 2):
        extended = json.loads(
            (results / "long" / cells.relative_to(results / "short") / f"seed{seed}.json").read_text()
        )
        expected = json.loads((results / "ref" / cells.relative_to(results / "short") / f"seed{seed}.json").read_text())
        assert without_extension(extended) == comparable(expected)
        assert extended.get("extended_from") == (
            {"state": f"../../../short/{dataset_slug(data[0])}/mlp-small/seed0+seed1.final.pt", "steps": 4}
            if seed < 2
            else None
        )
    assert "extends" in yaml.safe_load((results / "long" / "grid.yaml").read_text())


def test_a_grid_cannot_extend_itself(tmp_path: Path) -> None:
    grid = tiny_grid(tmp_path, ["local:hopper-tiny"], name="tiny", extends="tiny")
    with pytest.raises(BenchError, match="cannot extend itself"):
        load_grid(grid)


@pytest.fixture(scope="module")
def short_grid(hopper_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """A grid of 4 steps that kept its final states: its datasets and results folder."""
    data, folder = [f"local:{hopper_file}"], tmp_path_factory.mktemp("short")
    results, grid = folder / "results", tiny_grid(folder, data, name="short", keep_final_state=True)
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 0
    return data, results


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 4}, "which was trained for 4 steps, not fewer than this grid's 4: give this grid more steps"),
        ({"steps": 12, "eval_every": 6}, "whose runs end at step 4, but evaluates every 6 steps"),
        ({"steps": 8, "eval_episodes": 2}, "made with other settings (.*settings.eval_episodes: 1 -> 2)"),
        ({"steps": 8, "algo": ["cql", "iql"]}, "IQL runs cannot be extended: its actor's learning rate"),
    ],
)
def test_a_grid_that_cannot_extend_the_other_stops_before_training(
    short_grid: tuple[list[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict,
    message: str,
) -> None:
    data, results = short_grid
    longer = tiny_grid(tmp_path, data, name="long", extends="short", **changes)
    capsys.readouterr()
    assert main(["grid", "run", str(longer), "--results", str(results), "--dry-run"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Warning, the run would stop")]
    assert len(warnings) == 1 and re.search(message, warnings[0])
    assert main(["grid", "run", str(longer), "--results", str(results)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (results / "long").exists()


def test_a_grid_that_extends_one_without_final_states_warns_and_trains_from_step_0(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, results = [f"local:{hopper_file}"], tmp_path / "results"
    assert main(["grid", "run", str(tiny_grid(tmp_path, data, name="short")), "--results", str(results)]) == 0
    longer = tiny_grid(tmp_path, data, name="long", steps=8, extends="short")
    capsys.readouterr()
    assert main(["grid", "run", str(longer), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Warning, grid 'short' holds no final state of the 1 cell(s) to run" in out
    assert "keep_final_state: true" in out and "the run would stop" not in out
    assert main(["grid", "run", str(longer), "--results", str(results)]) == 0
    assert "they train from step 0" in capsys.readouterr().out
    record = json.loads((results / "long" / dataset_slug(data[0]) / "mlp-small" / "seed0.json").read_text())
    assert record["status"] == "done" and record.get("extended_from") is None
