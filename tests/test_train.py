"""One cell end to end on a generated D4RL-layout file with Hopper's sizes: record, determinism, resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import train
from bench.cli import main
from bench.data.loader import load_dataset
from bench.errors import BenchError
from bench.train import RunConfig, apply_overrides, train_cell
from tests.d4rl_files import write_small_d4rl_file
from tests.interrupts import interrupted_on_call

# Fields that hold wall-clock readings; everything else must repeat exactly for the same seed on CPU.
TIMING_FIELDS = {"seconds_per_epoch", "started_at", "finished_at"}


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_d4rl_file(tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5", env="hopper")


def tiny_config(path: Path, **changes) -> RunConfig:
    settings = dict(
        dataset=f"local:{path}",
        arch="mlp-small",
        seed=0,
        steps=6,
        epoch_steps=2,
        eval_every=4,
        eval_episodes=2,
        checkpoint_every=1,
        device="cpu",
        cql=apply_overrides(train.CQLConfig(), ["batch_size=16", "cql_n_actions=3"]),
    )
    settings.update(changes)
    return RunConfig(**settings)


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


def test_a_record_names_the_recipe_that_made_its_local_data(tmp_path: Path) -> None:
    """Recipe 1 and 2 files of one dataset differ (README, "Local D4RL-recipe datasets"); the record says which
    one it trained on, so a table that mixes them can say so."""
    data = write_small_d4rl_file(
        tmp_path / "hopper-medium.hdf5", env="hopper", attrs={"env": "hopper", "source": "local", "recipe": 1}
    )
    record = train_cell(tiny_config(data, steps=2, eval_every=2), tmp_path / "cell.json", progress=False)
    assert record["dataset"]["recipe"] == 1


def test_tiny_run_writes_a_complete_record(hopper_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cell.json"
    record = train_cell(tiny_config(hopper_file), out, progress=False)
    assert json.loads(out.read_text()) == record
    assert record["status"] == "done"
    assert record["cell"] == {"dataset": f"local:{hopper_file}", "arch": "mlp-small", "seed": 0}
    assert record["config"]["cql"]["cql_alpha"] == 10.0 and record["config"]["cql"]["batch_size"] == 16
    assert [p["step"] for p in record["curve"]] == [4, 6]
    for point in record["curve"]:
        assert len(point["episode_returns"]) == 2
        assert math.isfinite(point["normalized_score"]) and math.isfinite(point["return_mean"])
    assert record["final_score"] == record["curve"][-1]["normalized_score"]
    assert record["best_score"] == max(p["normalized_score"] for p in record["curve"])
    assert len(record["seconds_per_epoch"]) == 3 and all(s > 0 for s in record["seconds_per_epoch"])
    params = record["parameters"]
    assert params["actor_network"] == (11 * 64 + 64) + (64 * 64 + 64) + (64 * 6 + 6)
    assert params["critic"] == (14 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    assert params["critics_total"] == 2 * params["critic"]
    assert record["dataset"]["source"] == "local" and "not D4RL" in record["dataset"]["label"]
    assert record["dataset"]["sha256"] == load_dataset(f"local:{hopper_file}").sha256
    assert record["dataset"]["recipe"] is None  # not made by the local suite's recipes
    assert record["device"]["type"] == "cpu" and record["versions"]["torch"]
    assert {"git_commit", "started_at", "finished_at", "error", "losses"} <= record.keys()
    assert not train.checkpoint_path(out).exists()


def test_same_seed_same_record(hopper_file: Path, tmp_path: Path) -> None:
    a = train_cell(tiny_config(hopper_file), tmp_path / "a.json", progress=False)
    b = train_cell(tiny_config(hopper_file), tmp_path / "b.json", progress=False)
    c = train_cell(tiny_config(hopper_file, seed=1), tmp_path / "c.json", progress=False)
    assert comparable(a) == comparable(b)
    assert a["losses"] != c["losses"]


def kill_in_epoch(call: int, config: RunConfig, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `config` into `out` and kill it at its `call`-th epoch, leaving the last checkpoint behind."""
    real = train._train_epoch
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(real, call))
    with pytest.raises(KeyboardInterrupt):
        train_cell(config, out, progress=False)
    monkeypatch.setattr(train, "_train_epoch", real)


def test_killed_run_resumes_to_the_uninterrupted_record(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = train_cell(tiny_config(hopper_file), tmp_path / "ref.json", progress=False)
    out = tmp_path / "killed.json"
    kill_in_epoch(3, tiny_config(hopper_file), out, monkeypatch)
    assert not out.exists() and train.checkpoint_path(out).exists()
    resumed = train_cell(tiny_config(hopper_file), out, progress=False)
    assert comparable(resumed) == comparable(reference)
    assert not train.checkpoint_path(out).exists()


def test_checkpoint_from_another_config_is_refused(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cell.json"
    kill_in_epoch(2, tiny_config(hopper_file), out, monkeypatch)
    with pytest.raises(BenchError, match="different configuration"):
        train_cell(tiny_config(hopper_file, seed=5), out, progress=False)
    assert train_cell(tiny_config(hopper_file, seed=5), out, progress=False, force=True)["status"] == "done"


def test_checkpoint_of_other_data_is_refused(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "hopper-data.hdf5"
    data.write_bytes(hopper_file.read_bytes())
    out = tmp_path / "cell.json"
    kill_in_epoch(2, tiny_config(data), out, monkeypatch)
    write_small_d4rl_file(data, env="hopper", seed=1)  # regenerated under the same name
    with pytest.raises(BenchError, match="other data"):
        train_cell(tiny_config(data), out, progress=False)
    record = train_cell(tiny_config(data), out, progress=False, force=True)
    assert record["dataset"]["sha256"] == load_dataset(f"local:{data}").sha256


def test_checkpoint_of_another_kind_of_device_is_refused_with_the_device_to_use(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With `device: auto` the configuration is the same on a GPU box and a CPU one, but a CUDA generator's state
    # does not load into a CPU generator (torch raises about its size), nor the streams carry over.
    out = tmp_path / "cell.json"
    kill_in_epoch(2, tiny_config(hopper_file), out, monkeypatch)
    checkpoint = train.checkpoint_path(out)
    state = torch.load(checkpoint, weights_only=False)
    assert state["device_type"] == "cpu"
    state["device_type"] = "cuda"
    torch.save(state, checkpoint)
    with pytest.raises(BenchError, match=r"cell\.ckpt\.pt was written on CUDA and this run is on CPU.*--device cuda"):
        train_cell(tiny_config(hopper_file), out, progress=False)
    # A checkpoint from before the device was kept: a CUDA random state in it says where it was written.
    del state["device_type"]
    state["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, checkpoint)
    with pytest.raises(BenchError, match="was written on CUDA"):
        train_cell(tiny_config(hopper_file), out, progress=False)
    assert train_cell(tiny_config(hopper_file), out, progress=False, force=True)["status"] == "done"


def test_non_finite_loss_ends_as_diverged(hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_epoch = train._train_epoch

    def nan_epoch(*args, **kwargs):
        seconds, losses = real_epoch(*args, **kwargs)
        return seconds, {**losses, "critic_loss": np.full_like(losses["critic_loss"], np.nan)}

    monkeypatch.setattr(train, "_train_epoch", nan_epoch)
    out = tmp_path / "nan.json"
    record = train_cell(tiny_config(hopper_file), out, progress=False)
    assert record["status"] == "diverged" and "non-finite" in record["error"]
    assert record["steps_done"] == 2
    assert json.loads(out.read_text())["status"] == "diverged"


def test_finished_record_is_not_overwritten_without_force(hopper_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cell.json"
    train_cell(tiny_config(hopper_file), out, progress=False)
    with pytest.raises(BenchError, match="--force"):
        train_cell(tiny_config(hopper_file), out, progress=False)
    assert train_cell(tiny_config(hopper_file), out, progress=False, force=True)["status"] == "done"


def test_corrupt_record_is_replaced(hopper_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cell.json"
    out.write_text('{"status": "do')
    assert train_cell(tiny_config(hopper_file), out, progress=False)["status"] == "done"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 5}, "multiple of the epoch size"),
        ({"eval_every": 3}, "multiple of the epoch size"),
        ({"arch": "no-such-arch"}, "no-such-arch"),
        ({"dataset": "d4rl:hopper-medum-v2"}, "hopper-medium-v2"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_input_is_refused(hopper_file: Path, tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        train_cell(tiny_config(hopper_file, **changes), tmp_path / "x.json", progress=False)
    assert not (tmp_path / "x.json").exists()


def test_overrides_are_checked() -> None:
    assert apply_overrides(train.CQLConfig(), ["cql_alpha=5"]).cql_alpha == 5.0
    assert apply_overrides(train.CQLConfig(), ["cql_clip_diff_min=-200"]).cql_clip_diff_min == -200.0
    with pytest.raises(BenchError, match="cql_alhpa"):
        apply_overrides(train.CQLConfig(), ["cql_alhpa=5"])
    with pytest.raises(BenchError, match="batch_size"):
        apply_overrides(train.CQLConfig(), ["batch_size=big"])
    with pytest.raises(BenchError, match=r"'cql_clip_diff_max=\.inf': inf is not a finite number"):
        apply_overrides(train.CQLConfig(), ["cql_clip_diff_max=.inf"])
    nan = RunConfig(dataset="local:hopper-random", arch="mlp", cql=train.CQLConfig(policy_lr=float("nan")))
    with pytest.raises(BenchError, match=r"setting cql\.policy_lr: nan is not a finite number"):
        nan.validate()


def cli_run(path: Path) -> list[str]:
    return ["run", "--dataset", f"local:{path}", "--arch", "mlp-small", "--device", "cpu", "--no-progress"]


CLI_SMALL = ["--steps", "4", "--epoch-steps", "2", "--eval-every", "4", "--eval-episodes", "1"]
CLI_SMALL += ["--set", "batch_size=16", "--set", "cql_n_actions=2"]


def machine_load(monkeypatch: pytest.MonkeyPatch, load: float, cores: int = 2) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: cores)


def test_cli_run_prints_speed_and_refuses_bad_input(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine_load(monkeypatch, 0.5)
    out = tmp_path / "cli.json"
    common = cli_run(hopper_file)
    small = CLI_SMALL
    assert main([*common, *small, "--out", str(out)]) == 0
    assert "gradient steps/s" in capsys.readouterr().out
    assert main([*common, *small, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert main([*common, "--steps", "3", "--epoch-steps", "2", "--out", str(tmp_path / "y.json")]) == 2
    capsys.readouterr()
    # An --out of the wrong kind is refused before training, not when the record is written at the end.
    assert main([*common, *small, "--out", str(tmp_path)]) == 2
    assert (
        f"--out {tmp_path} is a folder; name the record's file (--out {tmp_path / 'seed0.json'})"
        in capsys.readouterr().err
    )
    assert main([*common, *small, "--seeds", "0,1", "--out", str(out)]) == 2
    assert "is a file; with --seeds it names the folder" in capsys.readouterr().err


def test_steps_that_do_not_fill_epochs_name_both_fixes(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine_load(monkeypatch, 0.5)
    assert main([*cli_run(hopper_file), "--steps", "200", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps 1000" in err and "--epoch-steps 200" in err
    # The suggested epoch size also divides --eval-every, so following the advice is not refused next.
    argv = [*cli_run(hopper_file), "--steps", "300", "--eval-every", "200", "--out", str(tmp_path / "y.json")]
    assert main(argv) == 2
    assert "--epoch-steps 100" in capsys.readouterr().err


def test_cli_run_sets_torch_threads(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine_load(monkeypatch, 9.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / "cli.json"
        assert main([*cli_run(hopper_file), *CLI_SMALL, "--threads", "1", "--out", str(out)]) == 0
        assert json.loads(out.read_text())["device"]["torch_threads"] == 1
        assert torch.get_num_threads() == 2
        assert "--threads" not in capsys.readouterr().err
        assert main([*cli_run(hopper_file), *CLI_SMALL, "--threads", "0", "--out", str(tmp_path / "z.json")]) == 2
        assert "--threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_cli_run_hints_at_threads_when_the_load_exceeds_the_cores(
    hopper_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        machine_load(monkeypatch, 3.5, cores=2)
        assert main([*cli_run(hopper_file), *CLI_SMALL, "--out", str(tmp_path / "busy.json")]) == 0
        hints = [line for line in capsys.readouterr().err.splitlines() if "--threads" in line]
        assert len(hints) == 1 and "3.5" in hints[0] and "2 CPU cores" in hints[0]
        machine_load(monkeypatch, 1.5, cores=2)
        assert main([*cli_run(hopper_file), *CLI_SMALL, "--out", str(tmp_path / "quiet.json")]) == 0
        assert "--threads" not in capsys.readouterr().err
        # One thread already: nothing to suggest.
        torch.set_num_threads(1)
        machine_load(monkeypatch, 3.5, cores=2)
        assert main([*cli_run(hopper_file), *CLI_SMALL, "--out", str(tmp_path / "single.json")]) == 0
        assert "--threads" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_git_commit_comes_from_the_environment_outside_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_GIT_COMMIT", "0123abc")
    assert train.git_commit() == "0123abc"
    monkeypatch.delenv("BENCH_GIT_COMMIT")
    commit = train.git_commit()
    assert commit is None or len(commit.removesuffix("-dirty")) == 40
