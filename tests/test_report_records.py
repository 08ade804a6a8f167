"""Loading records for the report: tidy frames, corrupt files, mixed configurations, the expected grid."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.report.records import load_records, still_improving, usable_score
from tests.report_fixtures import (
    as_algorithm,
    fixture_records,
    make_record,
    record_path,
    write_fixture,
    write_grid_file,
    write_records,
)

HALFCHEETAH = "d4rl:halfcheetah-medium-v2"
HOPPER = "d4rl:hopper-medium-v2"


def test_fixture_loads_into_one_row_per_record(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    records = load_records(tmp_path)
    runs = records.runs
    assert len(runs) == 12 and records.skipped == [] and records.ignored == []
    assert records.architectures == ["kan", "mlp"] and records.seeds == [0, 1, 2]
    assert records.expected.source == "observed records" and records.expected.cells == 12
    row = runs[(runs["dataset"] == HALFCHEETAH) & (runs["arch"] == "mlp") & (runs["seed"] == 0)].iloc[0]
    assert row["score"] == pytest.approx(46.8) and row["score_step"] == 2000
    assert row["actor_params"] == 7_692 and row["actor_params_total"] == 7_694 and row["critic_params"] == 137_985
    assert row["seconds_per_1k"] == pytest.approx(2.0)  # median of 0.2 s per 100-step epoch, scaled
    assert row["display_name"] == "halfcheetah-medium-v2" and row["dataset_label"] == "D4RL"
    assert row["device"] == "Test CPU 9000 (CPU, 2 torch threads)"
    assert len(records.curves) == 12 * 2  # evaluations at steps 1000 and 2000


def test_corrupt_json_is_reported_and_skipped_other_files_ignored(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    broken = tmp_path / "d4rl-hopper-medium-v2" / "kan" / "seed7.json"
    broken.write_text('{"schema_version": 1, "cell": {"dataset"')
    (tmp_path / "d4rl-hopper-medium-v2" / "kan" / "seed0.lock").write_text("")
    (tmp_path / "d4rl-hopper-medium-v2" / "kan" / "seed0.ckpt.pt").write_bytes(b"\x80\x04")
    (tmp_path / ".seed0.json.abc.tmp").write_text("{")
    (tmp_path / "status.json").write_text(json.dumps({"cells": 12}))
    records = load_records(tmp_path)
    assert len(records.runs) == 12
    assert [s.path for s in records.skipped] == [broken]
    assert "corrupt JSON" in records.skipped[0].reason
    assert [s.path for s in records.ignored] == [tmp_path / "status.json"]


def test_only_corrupt_files_is_an_error_naming_one(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("not json")
    with pytest.raises(BenchError, match=r"no run records.*a\.json"):
        load_records(tmp_path)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        load_records(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"steps": 4000}, "steps"),
        ({"eval_episodes": 5}, "eval_episodes"),
        ({"cql.cql_alpha": 5.0}, "cql.cql_alpha"),
        ({"normalize_reward": True}, "normalize_reward"),
    ],
)
def test_records_of_another_configuration_are_refused(tmp_path: Path, changes: dict, key: str) -> None:
    paths = write_fixture(tmp_path)
    odd = make_record(HOPPER, "kan", 2, 60.0, config_changes=changes)
    odd_path = record_path(tmp_path, odd)
    odd_path.write_text(json.dumps(odd))
    with pytest.raises(BenchError, match="different configurations") as error:
        load_records(tmp_path)
    message = str(error.value)
    named = re.findall(r"(/\S+\.json)", message)
    assert len(named) == 2 and str(odd_path) in named and set(named) <= {str(p) for p in paths}
    assert key in message
    assert "--allow-mixed" in message

    mixed = load_records(tmp_path, allow_mixed=True)
    assert mixed.mixed_keys == [key]


def overridden(record: dict, architecture_overrides: dict) -> dict:
    """`record` as a grid with these architecture_overrides writes it: its own override applied."""
    own = architecture_overrides.get(record["cell"]["arch"], {})
    record["grid_overrides"] = {
        "applied": {f"cql.{k}": v for k, v in own.items()},
        "replaced": {f"cql.{k}": record["config"]["cql"][k] for k in own},
        "dataset_overrides": {},
        "architecture_overrides": architecture_overrides,
    }
    record["config"]["cql"].update(own)
    return record


def test_a_grid_that_gained_architectures_is_still_one_configuration(tmp_path: Path) -> None:
    """Architectures added to a grid after some cells finished bring their own overrides: the older records lack
    them, which is no conflict; a record of an architecture trained without its override, or two values for
    one override, is."""
    before = {"kan": {"policy_lr": 1e-4}}
    after = {**before, "kan-g3": {"policy_lr": 1e-4}}
    records = [overridden(make_record(d, "mlp", s, 50.0), before) for d in (HALFCHEETAH, HOPPER) for s in (0, 1)]
    records += [overridden(make_record(d, "kan", s, 50.0), after) for d in (HALFCHEETAH, HOPPER) for s in (0, 1)]
    write_records(tmp_path, records)
    loaded = load_records(tmp_path)
    assert loaded.mixed_keys == [] and loaded.config["cql.policy_lr"] == 3e-5
    assert loaded.config["grid_overrides.architecture_overrides.kan.policy_lr"] == 1e-4
    assert loaded.config["grid_overrides.architecture_overrides.kan-g3.policy_lr"] == 1e-4

    without = overridden(make_record(HOPPER, "kan", 1, 50.0), {})  # kan at the grid-wide rate
    path = write_records(tmp_path, [without])[0]
    with pytest.raises(BenchError, match=rf"{path} trained kan without grid_overrides\.architecture_overrides\.kan\."):
        load_records(tmp_path)
    assert load_records(tmp_path, allow_mixed=True).mixed_keys == [
        "grid_overrides.architecture_overrides.kan.policy_lr"
    ]

    other = overridden(make_record(HOPPER, "kan", 1, 50.0), {**before, "kan-g3": {"policy_lr": 3e-4}})
    write_records(tmp_path, [other])
    with pytest.raises(BenchError, match=r"differ in grid_overrides\.architecture_overrides\.kan-g3\.policy_lr"):
        load_records(tmp_path)


def test_per_epoch_diagnostics_load_one_row_per_epoch_and_quantity(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    frame = load_records(tmp_path).diagnostics
    assert len(frame) == 12 * 20 * 2  # 12 runs x 20 epochs x (critic_loss, alpha_prime)
    kan = frame[(frame["dataset"] == HOPPER) & (frame["arch"] == "kan") & (frame["seed"] == 2)]
    critic = kan[kan["name"] == "critic_loss"]
    assert critic["step"].tolist() == list(range(100, 2001, 100))
    assert critic["value"].tolist() == [10.0 + 2 + i for i in range(20)]

    diverged = make_record(HOPPER, "kan", 1, 50.0)
    diverged["diagnostics"]["critic_loss"][-1] = None  # a non-finite mean is stored as null
    old = make_record(HOPPER, "mlp", 1, 50.0)
    del old["diagnostics"]  # records from before diagnostics were kept
    write_records(tmp_path, [diverged, old])
    frame = load_records(tmp_path).diagnostics
    hopper = frame[frame["dataset"] == HOPPER]
    kan = hopper[(hopper["arch"] == "kan") & (hopper["seed"] == 1) & (hopper["name"] == "critic_loss")]
    assert math.isnan(kan["value"].iloc[-1]) and kan["value"].iloc[:-1].notna().all()
    assert hopper[(hopper["arch"] == "mlp") & (hopper["seed"] == 1)].empty

    damaged = make_record(HOPPER, "mlp", 0, 50.0)
    damaged["diagnostics"]["critic_loss"] = damaged["diagnostics"]["critic_loss"][:-1]
    path = write_records(tmp_path, [damaged])[0]
    with pytest.raises(BenchError, match=rf"{path}: diagnostics\.critic_loss has 19 values for 20 epochs"):
        load_records(tmp_path)


def test_device_and_checkpoint_cadence_may_differ(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    other = make_record(HOPPER, "kan", 2, 60.0, config_changes={"device": "cuda", "checkpoint_every": 1})
    record_path(tmp_path, other).write_text(json.dumps(other))
    assert load_records(tmp_path).mixed_keys == []


def test_one_name_for_two_networks_is_refused(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    odd = make_record(HOPPER, "kan", 1, 60.0)
    odd["architecture"]["actor"] = "kan[8]"
    record_path(tmp_path, odd).write_text(json.dumps(odd))
    with pytest.raises(BenchError, match=r"architecture 'kan' means different networks.*kan\[8\]"):
        load_records(tmp_path)


def test_two_records_for_one_cell_are_refused(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    copy = tmp_path / "old" / "copy.json"
    copy.parent.mkdir()
    copy.write_text(json.dumps(make_record(HOPPER, "mlp", 0, 50.0)))
    with pytest.raises(BenchError, match=r"two records for the same cell .*copy\.json"):
        load_records(tmp_path)


def test_records_of_one_dataset_on_different_data_are_refused(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    old = make_record(HOPPER, "kan", 1, 60.0)
    del old["dataset"]["sha256"]  # records from before the digest are not compared
    record_path(tmp_path, old).write_text(json.dumps(old))
    assert len(load_records(tmp_path).runs) > 0
    stale = make_record(HOPPER, "kan", 1, 60.0)
    stale["dataset"]["sha256"] = "f" * 64
    record_path(tmp_path, stale).write_text(json.dumps(stale))
    with pytest.raises(BenchError, match=r"trained on different data: .* \(sha256 ffffffffffff\)"):
        load_records(tmp_path)


def test_a_damaged_record_names_its_file_and_key(tmp_path: Path) -> None:
    record = make_record(HOPPER, "mlp", 0, 50.0)
    del record["parameters"]["actor_network"]
    path = write_records(tmp_path, [record])[0]
    with pytest.raises(BenchError, match=rf"{path}: record has no key 'parameters.actor_network'"):
        load_records(tmp_path)
    record = make_record(HOPPER, "mlp", 0, 50.0)
    record["curve"][1]["normalized_score"] = "high"
    write_records(tmp_path, [record])
    with pytest.raises(BenchError, match=r"'curve\[1\]\.normalized_score' should be int or float, got 'high'"):
        load_records(tmp_path)
    record = make_record(HOPPER, "mlp", 0, 50.0)
    record["schema_version"] = 2
    write_records(tmp_path, [record])
    with pytest.raises(BenchError, match="schema_version 2"):
        load_records(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: r["diagnostics"]["step"].__setitem__(3, None), r"diagnostics\.step\[3\] should be int, got None"),
        (lambda r: r.update(group={"seeds": [0], "size": 0}), r"group\.size is 0; it must be a positive number"),
        (lambda r: r.update(group="abc"), r"key 'group' should be dict, got 'abc'"),
        (lambda r: r.update(group={"size": 1}), r"record has no key 'group\.seeds'"),
        (
            lambda r: r["curve"][-1].update(episode_returns=["1000"] * 10),
            r"curve\[1\]\.episode_returns\[0\] should be int or float, got '1000'",
        ),
        (
            lambda r: r.update(grid_overrides={"replaced": ["cql.policy_lr"]}),
            r"key 'grid_overrides\.replaced' should be dict, got \['cql\.policy_lr'\]",
        ),
        (
            lambda r: r.update(grid_overrides={"architecture_overrides": {"mlp": 0.1}}),
            r"key 'grid_overrides\.architecture_overrides\.mlp' should be dict, got 0\.1",
        ),
    ],
)
def test_a_damaged_value_the_report_reads_names_its_file_and_key(tmp_path: Path, damage, message: str) -> None:
    """Values the tables compute with are checked on loading, so a damaged one is an error naming the file and the
    key, not a traceback."""
    record = make_record(HOPPER, "mlp", 0, 50.0)
    damage(record)
    path = write_records(tmp_path, [record])[0]
    with pytest.raises(BenchError, match=rf"^{re.escape(str(path))}: .*{message}"):
        load_records(tmp_path)


def test_status_decides_what_counts(tmp_path: Path) -> None:
    write_records(
        tmp_path,
        [
            make_record(HOPPER, "mlp", 0, 50.0),
            make_record(HOPPER, "mlp", 1, 30.0, status="diverged", last_step=1000),
            make_record(HOPPER, "mlp", 2, None, status="diverged", last_step=500),
            make_record(HOPPER, "kan", 0, 40.0, status="failed", last_step=1000),
        ],
    )
    runs = load_records(tmp_path).runs.set_index(["arch", "seed"])
    assert runs.loc[("mlp", 0), "score"] == 50.0
    # diverged: an outcome of the algorithm, its last evaluation counts (at step 1000, not the budget)
    assert runs.loc[("mlp", 1), "score"] == 30.0 and runs.loc[("mlp", 1), "score_step"] == 1000
    assert math.isnan(runs.loc[("mlp", 2), "score"])  # diverged before the first evaluation
    assert math.isnan(runs.loc[("kan", 0), "score"])  # failed: a software error, missing
    records = load_records(tmp_path)
    assert set(records.curves["seed"][records.curves["arch"] == "kan"]) == set()


def test_grid_file_sets_the_expected_cells(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    write_grid_file(tmp_path, datasets=(HOPPER, HALFCHEETAH, "d4rl:walker2d-medium-v2"), archs=("mlp", "kan"))
    records = load_records(tmp_path)
    assert records.expected.source == "grid.yaml"
    assert records.architectures == ["mlp", "kan"]  # the grid's order
    assert records.datasets == [HOPPER, HALFCHEETAH, "d4rl:walker2d-medium-v2"]
    assert records.expected.cells == 3 * 2 * 3
    assert records.display_names()["d4rl:walker2d-medium-v2"] == "walker2d-medium-v2"


def test_records_outside_the_grid_file_are_refused(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    write_grid_file(tmp_path, seeds=(0, 1))
    with pytest.raises(BenchError, match=r"seed2\.json is for seed 2, which .*grid\.yaml does not list"):
        load_records(tmp_path)
    assert load_records(tmp_path, allow_mixed=True).seeds == [0, 1, 2]


def test_a_multi_algorithm_grid_with_some_algorithms_records_is_that_grid(tmp_path: Path) -> None:
    """The folder of a grid of several algorithms labels its architectures by the algorithms its grid file lists:
    with only BC's records so far, the TD3+BC cells are missing, not another grid's."""
    bc = [as_algorithm(r, "bc", {"actor_lr": 3e-4}) for r in fixture_records()]
    write_records(tmp_path / "bc", bc)
    write_grid_file(tmp_path, algorithms=("bc", "td3bc"))
    records = load_records(tmp_path)
    assert records.architectures == ["BC mlp", "BC kan", "TD3+BC mlp", "TD3+BC kan"]
    assert set(records.runs["arch"]) == {"BC mlp", "BC kan"} and records.algorithms == ["bc"]
    assert records.expected.cells == 2 * 4 * 3 and len(records.runs) == 12
    assert records.algorithm_phrase() == (
        "Algorithms: BC (each column or label names its algorithm before the architecture; no records of TD3+BC "
        "yet, whose columns are dashes)."
    )

    # Records of an algorithm the grid file does not list still belong to another grid.
    td3bc = as_algorithm(make_record(HOPPER, "mlp", 0, 50.0), "td3bc", {"alpha": 2.5})
    write_records(tmp_path / "td3bc", [td3bc])
    write_grid_file(tmp_path, algorithms=("bc",))
    with pytest.raises(
        BenchError, match=r"seed0\.json is for arch 'BC kan', which .*grid\.yaml does not list \(mlp, kan\)"
    ):
        load_records(tmp_path)


def test_a_grid_file_without_the_lists_is_an_error(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    (tmp_path / "grid.yaml").write_text("name: x\nseeds: [0]\n")
    with pytest.raises(BenchError, match=r"grid\.yaml: the grid file has no 'architectures', 'datasets'"):
        load_records(tmp_path)


def curve_record(scores: list[float], std: float, status: str = "done") -> dict:
    points = [
        {"step": 1000 * (i + 1), "normalized_score": s, "normalized_score_std": std, "episode_returns": [0.0] * 10}
        for i, s in enumerate(scores)
    ]
    return {"status": status, "curve": points}


def test_still_improving_needs_a_rise_above_the_evaluation_noise() -> None:
    rising = [10, 20, 30, 40, 50, 60, 70, 80]
    assert still_improving(curve_record(rising, std=2.0))
    assert not still_improving(curve_record([50, 52, 49, 51, 50, 50, 51, 49], std=2.0))  # a plateau
    # Rises by 30 over the last quarter, but its standard error is 100 / sqrt(10) = 31.6: within the noise.
    assert not still_improving(curve_record(rising, std=100.0))
    assert not still_improving(curve_record(rising, std=2.0, status="diverged"))
    assert not still_improving(curve_record(rising[:3], std=2.0))  # too short a curve to judge


def test_a_run_scored_by_its_last_evaluations_averages_the_last_k_it_has() -> None:
    done = {**curve_record([10, 20, 30, 40], std=1.0), "final_score": 40.0}
    assert usable_score(done) == (40.0, 4000)
    assert usable_score(done, last_evaluations=3) == (30.0, 4000)
    assert usable_score(done, last_evaluations=9) == (25.0, 4000)  # fewer than 9: all four
    # A diverged run: its last evaluations before it diverged (it has no final score).
    diverged = {**curve_record([10, 20, 60], std=1.0, status="diverged"), "final_score": None}
    assert usable_score(diverged) == (60.0, 3000) and usable_score(diverged, last_evaluations=2) == (40.0, 3000)
    unscored = {**curve_record([10, 20], std=1.0), "final_score": None}
    assert math.isnan(usable_score(unscored, last_evaluations=2)[0])


def test_records_at_a_step_are_the_runs_as_they_stood_then(tmp_path: Path) -> None:
    # The fixture's runs: 2,000 steps in epochs of 100, evaluations at 1,000 (10 points below) and 2,000.
    write_fixture(tmp_path)
    whole, half = load_records(tmp_path), load_records(tmp_path, at_step=1000)
    assert (whole.at_step, half.at_step) == (None, 1000)
    assert half.runs["score"].tolist() == [score - 10.0 for score in whole.runs["score"]]
    assert set(half.runs["score_step"]) == {1000} and set(half.runs["steps"]) == {1000}
    assert set(half.runs["status"]) == {"done"} and not half.runs["still_improving"].any()
    assert half.curves["step"].max() == 1000 and len(half.curves) == len(whole.curves) // 2
    assert half.diagnostics["step"].max() == 1000 and len(half.diagnostics) == len(whole.diagnostics) // 2
    assert set(half.runs["epochs_timed"]) == {10}
    # At the runs' last step the cut changes nothing.
    end = load_records(tmp_path, at_step=2000)
    for frame in ("runs", "curves", "diagnostics"):
        assert getattr(end, frame).equals(getattr(whole, frame)), frame


def test_a_run_that_diverged_after_the_step_was_finished_at_it(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    later = make_record(HOPPER, "mlp", 1, 30.0, status="diverged", last_step=1000)  # between 1,000 and 2,000
    earlier = make_record(HOPPER, "kan", 1, None, status="diverged", last_step=500)  # before any evaluation
    failed = make_record(HOPPER, "kan", 2, 20.0, status="failed", last_step=1000)
    write_records(tmp_path, [later, earlier, failed])
    runs = load_records(tmp_path, at_step=1000).runs.set_index(["dataset", "arch", "seed"])
    assert runs.loc[(HOPPER, "mlp", 1), "status"] == "done" and runs.loc[(HOPPER, "mlp", 1), "score"] == 30.0
    assert runs.loc[(HOPPER, "kan", 1), "status"] == "diverged" and math.isnan(runs.loc[(HOPPER, "kan", 1), "score"])
    assert runs.loc[(HOPPER, "kan", 2), "status"] == "failed" and math.isnan(runs.loc[(HOPPER, "kan", 2), "score"])
    runs = load_records(tmp_path, at_step=2000).runs.set_index(["dataset", "arch", "seed"])
    assert runs.loc[(HOPPER, "mlp", 1), "status"] == "diverged" and runs.loc[(HOPPER, "mlp", 1), "score"] == 30.0


def test_a_run_that_diverged_after_a_step_it_did_not_evaluate_is_refused_there(tmp_path: Path) -> None:
    # Evaluations every 1,000 steps: at step 1,200 the first run was still running, the second had diverged.
    running = make_record(HOPPER, "mlp", 0, 30.0, status="diverged", last_step=1500)
    stopped = make_record(HOPPER, "mlp", 1, 20.0, status="diverged", last_step=1100)
    paths = write_records(tmp_path, [running, stopped])
    with pytest.raises(BenchError, match=r"seed0\.json: no evaluation at step 1,200 \(evaluations at 1,000\)"):
        load_records(tmp_path, at_step=1200)
    paths[0].unlink()
    assert load_records(tmp_path, at_step=1200).runs["status"].tolist() == ["diverged"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (1500, r"seed0\.json: no evaluation at step 1,500 \(evaluations at 1,000, 2,000\); pick one of them"),
        (3000, r"seed0\.json: --at-step 3,000 is past this run's 2,000 steps"),
        (0, "--at-step must be a positive number of gradient steps, got 0"),
    ],
)
def test_a_step_the_runs_did_not_evaluate_is_refused(tmp_path: Path, step: int, message: str) -> None:
    write_fixture(tmp_path)
    with pytest.raises(BenchError, match=message):
        load_records(tmp_path, at_step=step)


def with_episodes(record: dict, returns: list[float], lengths: list[int], *, at: int = -1) -> dict:
    record["curve"][at]["episode_returns"], record["curve"][at]["episode_lengths"] = returns, lengths
    return record


def test_the_scoring_evaluations_episodes_show_standing_apart_from_moving(tmp_path: Path) -> None:
    # Hopper pays 1 per step while healthy: a run whose episodes reach the limit with a return of about 1 per step
    # stands; HalfCheetah pays nothing for it, so its whole return is what moving earned.
    standing = with_episodes(make_record(HOPPER, "kan", 0, 31.0), [990.0, 1010.0], [1000, 1000])
    falling = with_episodes(make_record(HOPPER, "kan", 1, 5.0), [150.0, 450.0, 1300.0], [100, 200, 1000])
    cheetah = with_episodes(make_record(HALFCHEETAH, "kan", 0, 30.0), [3000.0, 1000.0], [1000, 1000])
    diverged = make_record(HOPPER, "kan", 2, 30.0, status="diverged", last_step=1000)
    with_episodes(diverged, [300.0], [100])
    write_records(tmp_path, [standing, falling, cheetah, diverged, make_record(HOPPER, "mlp", 0, None)])
    runs = load_records(tmp_path).runs.set_index(["dataset", "arch", "seed"])
    columns = ["episode_length", "time_limit_share", "reward_beyond_healthy"]
    assert runs.loc[(HOPPER, "kan", 0), columns].tolist() == [1000.0, 1.0, 0.0]
    # (150 + 450 + 1300 - 1300) / 1300 steps; one of three episodes at the limit.
    assert runs.loc[(HOPPER, "kan", 1), columns].tolist() == pytest.approx([1300 / 3, 1 / 3, 600 / 1300])
    assert runs.loc[(HALFCHEETAH, "kan", 0), columns].tolist() == [1000.0, 1.0, 2.0]
    # A diverged run is read at its last evaluation, like its score; a run without a score has none.
    assert runs.loc[(HOPPER, "kan", 2), columns].tolist() == [100.0, 0.0, 2.0]
    assert runs.loc[(HOPPER, "mlp", 0), columns].isna().all()


def test_the_episodes_at_a_step_are_that_evaluations(tmp_path: Path) -> None:
    record = with_episodes(make_record(HOPPER, "kan", 0, 40.0), [1100.0], [1000])
    write_records(tmp_path, [with_episodes(record, [120.0, 80.0], [50, 50], at=0)])
    runs = load_records(tmp_path, at_step=1000).runs
    assert runs[["episode_length", "time_limit_share", "reward_beyond_healthy"]].iloc[0].tolist() == [50.0, 0.0, 1.0]
    assert load_records(tmp_path).runs["reward_beyond_healthy"].iloc[0] == pytest.approx(0.1)
