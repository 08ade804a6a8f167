"""SAC behaviour policies and the local D4RL-recipe datasets regenerated from them, on a tiny budget."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.agents import sac
from bench.agents.sac import SACConfig, SACRunConfig, train_sac
from bench.cli import main
from bench.data.loader import load_dataset
from bench.errors import BenchError
from bench.suite.recipe import (
    POLICIES_DIR,
    choose_expert,
    choose_medium,
    expert_candidates,
    export_behaviour_policies,
    medium_candidates,
    regenerate_datasets,
)
from tests.interrupts import interrupted_on_call


def tiny_config() -> SACRunConfig:
    return SACRunConfig(
        env="hopper",
        steps=900,
        snapshot_every=300,
        snapshot_episodes=1,
        checkpoint_every=200,
        sac=SACConfig(actor="mlp[16,16]", critic="mlp[16,16]", batch_size=16, random_steps=200),
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("sac") / "run"
    train_sac(tiny_config(), run_dir, progress=False, threads=1)
    return run_dir


@pytest.fixture(scope="module")
def policies(finished_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("policies")
    export_behaviour_policies(finished_run, dest)
    return dest


def test_training_writes_snapshots_and_summary(finished_run: Path) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    assert [s["step"] for s in summary["snapshots"]] == [300, 600, 900]
    for snap in summary["snapshots"]:
        assert (finished_run / snap["path"]).exists() and np.isfinite(snap["return_mean"])
    assert np.load(finished_run / "training_actions.npy").shape == (900, 3)
    assert not (finished_run / "checkpoint.pt").exists()
    with pytest.raises(BenchError, match="finished"):
        train_sac(tiny_config(), finished_run, progress=False)


def test_killed_training_resumes_to_the_same_result(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sac._snapshot
    monkeypatch.setattr(sac, "_snapshot", interrupted_on_call(real, 2))
    with pytest.raises(KeyboardInterrupt):
        train_sac(tiny_config(), tmp_path / "run", progress=False, threads=1)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    monkeypatch.setattr(sac, "_snapshot", real)
    resumed = train_sac(tiny_config(), tmp_path / "run", progress=False, threads=1)
    reference = json.loads((finished_run / "summary.json").read_text())
    assert resumed["snapshots"] == reference["snapshots"]
    np.testing.assert_array_equal(
        np.load(tmp_path / "run" / "training_actions.npy"), np.load(finished_run / "training_actions.npy")
    )


def test_sigterm_stops_at_an_episode_end_with_a_checkpoint_that_resumes_to_the_same_result(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = sac._snapshot, []

    def signalled(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill -TERM <pid>` while it trains
        return real(*args, **kwargs)

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sac, "_snapshot", signalled)
    run = tmp_path / "run"
    with pytest.raises(BenchError, match="stopped on SIGTERM at step"):
        train_sac(tiny_config(), run, progress=False, threads=1)
    assert signal.getsignal(signal.SIGTERM) is handler
    # The signal came at the snapshot of step 300; the checkpoint is the first episode end after it, not the
    # last regular one (steps 200 and 400 are checkpoint_every's).
    stopped_at = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert 300 < stopped_at < 400
    monkeypatch.setattr(sac, "_snapshot", real)
    resumed = train_sac(tiny_config(), run, progress=False, threads=1)
    reference = json.loads((finished_run / "summary.json").read_text())
    assert resumed["snapshots"] == reference["snapshots"]
    np.testing.assert_array_equal(np.load(run / "training_actions.npy"), np.load(finished_run / "training_actions.npy"))


def test_budget_can_change_on_resume_and_the_shorter_run_is_the_longer_ones_prefix(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sac._snapshot
    monkeypatch.setattr(sac, "_snapshot", interrupted_on_call(real, 2))
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_sac(tiny_config(), run, progress=False, threads=1)
    monkeypatch.setattr(sac, "_snapshot", real)
    checkpoint_step = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert 300 < checkpoint_step < 600
    with pytest.raises(BenchError, match="past this run's budget of 300 steps; give a budget of at least 600"):
        train_sac(dataclasses.replace(tiny_config(), steps=300), run, progress=False)
    with pytest.raises(BenchError, match="another configuration"):
        train_sac(dataclasses.replace(tiny_config(), steps=600, seed=1), run, progress=False)
    shorter = train_sac(dataclasses.replace(tiny_config(), steps=600), run, progress=False, threads=1)
    reference = json.loads((finished_run / "summary.json").read_text())
    assert shorter["snapshots"] == reference["snapshots"][:2]
    assert shorter["budgets"] == [{"step": 0, "steps": 900}, {"step": checkpoint_step, "steps": 600}]
    assert shorter["config"]["steps"] == 600
    np.testing.assert_array_equal(
        np.load(run / "training_actions.npy"), np.load(finished_run / "training_actions.npy")[:600]
    )


def test_expert_is_the_best_evaluated_of_a_shortlist_and_medium_comes_before_it() -> None:
    table = [(1, 100.0), (2, 900.0), (3, 3200.0), (4, 700.0), (5, 3000.0), (6, 1300.0), (7, 2000.0)]
    snaps = [{"step": s, "return_mean": r} for s, r in table]
    # The final snapshot (7) and the best of the others, the first excluded: 3 and 5.
    shortlist = expert_candidates(snaps, count=3)
    assert [s["step"] for s in shortlist] == [3, 5, 7]
    # The longer evaluation decides: snapshot 3 was lucky in training; 5 is the best policy reached.
    returns = {1: 120.0, 2: 600.0, 3: 2500.0, 4: 400.0, 5: 2900.0, 6: 1150.0, 7: 1800.0}
    expert = choose_expert(shortlist, returns)
    assert expert["step"] == 5
    # Medium: before the expert, shortlisted by training-time return (target 1000: 900, 700, 100, then 3200).
    candidates = medium_candidates(snaps, expert, count=3)
    assert [s["step"] for s in candidates] == [2, 4, 1]
    assert choose_medium(candidates, returns, returns[5])["step"] == 2
    assert choose_expert(shortlist, {3: 1.0, 5: 2.0, 7: 2.0})["step"] == 7
    with pytest.raises(BenchError, match="two policy snapshots"):
        expert_candidates(snaps[:1])
    with pytest.raises(BenchError, match="no policy snapshot before the expert's"):
        medium_candidates(snaps, snaps[0])


def test_export_records_the_replay_and_both_policies(policies: Path) -> None:
    info = json.loads((policies / "policies.json").read_text())
    assert info["env"] == "hopper" and info["actor"] == "mlp[16,16]"
    assert info["sac_budgets"] == [{"step": 0, "steps": 900}]
    shortlist = info["expert_candidates"]
    assert [c["step"] for c in shortlist] == [600, 900]  # every snapshot but the first, at this budget
    assert info["expert"]["return_mean"] == max(c["return_mean"] for c in shortlist)
    assert info["medium"]["step"] < info["expert"]["step"]
    assert info["replay"]["steps"] == info["medium"]["step"]
    candidates = info["medium_candidates"]
    assert all(c["step"] < info["expert"]["step"] for c in candidates)
    target = info["expert"]["return_mean"] / 3
    chosen = next(c for c in candidates if c["step"] == info["medium"]["step"])
    assert chosen["return_mean"] == info["medium"]["return_mean"]
    assert all(abs(chosen["return_mean"] - target) <= abs(c["return_mean"] - target) for c in candidates)
    for name in ("medium_actor.pt", "expert_actor.pt", "replay_actions.npz"):
        assert (policies / name).stat().st_size > 0


def test_regeneration_is_byte_identical_and_loads(policies: Path, tmp_path: Path) -> None:
    first = regenerate_datasets(
        "hopper", policies_dir=policies, out_dir=tmp_path / "a", dataset_steps=400, progress=False
    )
    second = regenerate_datasets(
        "hopper", policies_dir=policies, out_dir=tmp_path / "b", dataset_steps=400, progress=False
    )
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    info = json.loads((policies / "policies.json").read_text())
    sizes = {}
    for path in first:
        dataset = load_dataset(f"local:{path}")
        assert dataset.source == "local" and dataset.env.name == "hopper"
        sizes[path.stem] = dataset.attrs
    assert sizes["hopper-medium-expert"]["policy"] == "sac-medium+sac-expert"
    replay = load_dataset(f"local:{first[1]}")
    assert replay.attrs["level"] == "medium-replay"
    with pytest.raises(BenchError, match="--overwrite"):
        regenerate_datasets("hopper", policies_dir=policies, out_dir=tmp_path / "a", dataset_steps=400, progress=False)
    assert info["replay"]["steps"] > 0


ROLLOUT_DIGESTS = """
import json, sys, torch
from bench.agents.sac import stochastic_policy
from bench.data.generate import collect_transitions, stream_digest
from bench.suite.recipe import POLICIES_DIR, RECIPES, load_behaviour_actor
torch.set_num_threads(1)
info = json.loads((POLICIES_DIR / "hopper" / "policies.json").read_text())
actor = load_behaviour_actor(POLICIES_DIR / "hopper" / "medium_actor.pt", "hopper", info["actor"])
streams = {recipe: collect_transitions("hopper", stochastic_policy(actor, 0, dtype=dtype), steps=300, seed=0)
           for recipe, dtype in RECIPES.items()}
print(json.dumps({recipe: stream_digest(stream) for recipe, stream in streams.items()}))
"""


@pytest.mark.skipif(not (POLICIES_DIR / "hopper" / "policies.json").exists(), reason="no committed hopper policies")
def test_recipe_2_rollouts_do_not_depend_on_the_cpu_kernels() -> None:
    """Another CPU, stood in for by other kernels on this one: MKL's reproducible SSE code path and ATen's
    non-vectorized one instead of the ones this CPU would pick."""

    def digests(**env: str) -> dict[str, str]:
        out = subprocess.run(
            [sys.executable, "-c", ROLLOUT_DIGESTS], env={**os.environ, **env}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    native, other = digests(), digests(MKL_CBWR="COMPATIBLE", ATEN_CPU_CAPABILITY="default")
    if native["1"] == other["1"]:
        pytest.skip("these kernels give this CPU's float32 results: the check would show nothing")
    assert native["2"] == other["2"]


def test_replay_stream_matches_the_training_stream(finished_run: Path, policies: Path, tmp_path: Path) -> None:
    from bench.suite.recipe import replay_training_stream

    info = json.loads((policies / "policies.json").read_text())
    stream = replay_training_stream("hopper", policies, info)
    actions = np.load(finished_run / "training_actions.npy")[: info["replay"]["steps"]]
    np.testing.assert_array_equal(stream["actions"], actions)

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("medium_actor.pt", "expert_actor.pt", "policies.json"):
        (tampered / name).write_bytes((policies / name).read_bytes())
    changed = actions.copy()
    changed[5] = -changed[5]
    np.savez_compressed(tampered / "replay_actions.npz", actions=changed)
    with pytest.raises(BenchError, match="hash mismatch"):
        replay_training_stream("hopper", tampered, info)


def test_cli_from_policies(policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "policies"
    shutil.copytree(policies, root / "hopper")
    common = ["--policies-dir", str(root), "--dataset-steps", "300", "--no-progress"]
    args = ["datasets", "generate", "--env", "hopper", "--from-policies", "--local-dir", str(tmp_path / "a")]
    assert main(args + common) == 0
    assert capsys.readouterr().out.count("local data, not D4RL, recipe 2") == 3
    assert main(args + common) == 2
    assert "--overwrite" in capsys.readouterr().err
    recipe1 = ["datasets", "generate", "--env", "hopper", "--from-policies", "--recipe", "1"]
    assert main([*recipe1, "--local-dir", str(tmp_path / "v1"), *common]) == 0
    capsys.readouterr()
    v1, v2 = (load_dataset(f"local:{tmp_path / d / 'hopper-medium.hdf5'}") for d in ("v1", "a"))
    assert (v1.attrs["recipe"], v2.attrs["recipe"]) == (1, 2)
    # The same policy and seeds: float32 and float64 actions agree to float32 rounding before the paths part.
    np.testing.assert_allclose(v1.transitions.actions[0], v2.transitions.actions[0], atol=1e-6)

    # Without --env every env is regenerated, so every env needs its policies; nothing is written otherwise.
    assert main(["datasets", "generate", "--from-policies", "--local-dir", str(tmp_path / "b"), *common]) == 2
    err = capsys.readouterr().err
    assert "no behaviour policies for walker2d, halfcheetah" in err and not (tmp_path / "b").exists()
    assert main(["datasets", "generate", "--policy", "random", "--from-policies"]) == 2
    assert "pass --env" in capsys.readouterr().err


def test_cli_from_policies_every_env(policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Each env needs policies of its own observation and action sizes: a tiny SAC run for each.
    root = tmp_path / "policies"
    shutil.copytree(policies, root / "hopper")
    for env in ("walker2d", "halfcheetah"):
        run_dir = tmp_path / "runs" / env
        train_sac(dataclasses.replace(tiny_config(), env=env), run_dir, progress=False, threads=1)
        export_behaviour_policies(run_dir, root / env)
    args = ["datasets", "generate", "--from-policies", "--policies-dir", str(root), "--local-dir", str(tmp_path)]
    assert main([*args, "--dataset-steps", "300", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("local data, not D4RL") == 9
    for env in ("hopper", "walker2d", "halfcheetah"):
        for level in ("medium", "medium-replay", "medium-expert"):
            assert load_dataset(f"local:{env}-{level}", local_dir=tmp_path).env.name == env


def test_a_long_training_stream_is_saved_in_parts_that_replay_as_one(
    finished_run: Path, policies: Path, tmp_path: Path
) -> None:
    from bench.suite.recipe import load_replay_actions, replay_training_stream, save_replay_actions

    info = json.loads((policies / "policies.json").read_text())
    split = tmp_path / "split"
    shutil.copytree(policies, split)
    actions = load_replay_actions(policies)
    paths = save_replay_actions(split, actions, max_rows=len(actions) // 3 + 1)
    assert [p.name for p in paths] == ["replay_actions-000.npz", "replay_actions-001.npz", "replay_actions-002.npz"]
    assert not (split / "replay_actions.npz").exists()
    np.testing.assert_array_equal(load_replay_actions(split), actions)
    np.testing.assert_array_equal(
        replay_training_stream("hopper", split, info)["actions"],
        replay_training_stream("hopper", policies, info)["actions"],
    )
    # A later export of a short stream replaces the parts instead of mixing with them.
    save_replay_actions(split, actions)
    assert sorted(p.name for p in split.glob("replay_actions*.npz")) == ["replay_actions.npz"]
    (split / "replay_actions-000.npz").write_bytes((split / "replay_actions.npz").read_bytes())
    with pytest.raises(BenchError, match=r"both replay_actions\.npz and its parts"):
        load_replay_actions(split)
