"""Table 9, where the actors' episodes go: distances by hand, the data's own row, the table and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import coverage
from bench.cli import main
from bench.coverage import (
    DATA_ROW,
    ActorCoverage,
    DatasetCoverage,
    coverage_figure,
    coverage_table,
    data_coverage,
    nearest_distances,
    raw_pitch,
    score_off_data_correlations,
    upside_down_share,
)
from bench.data.loader import load_dataset
from bench.deploy import DatasetStates, episode_ends
from bench.errors import BenchError
from bench.report.tables import to_markdown
from bench.train import train_cell
from tests.d4rl_files import write_small_d4rl_file
from tests.test_train import tiny_config


def brute_force(queries: np.ndarray, data: np.ndarray) -> np.ndarray:
    return np.sqrt(((queries[:, None, :] - data[None, :, :]) ** 2).sum(axis=2)).min(axis=1)


def coverage_command(tmp_path: Path, results: Path, reference_episodes: int) -> list[str]:
    """`bench coverage` of `results`, its tables and figure written under `tmp_path`."""
    return [
        "coverage",
        str(results),
        "--tables",
        str(tmp_path / "tables"),
        "--figures",
        str(tmp_path / "figures"),
        "--reference-episodes",
        str(reference_episodes),
    ]


def test_nearest_distances_are_the_brute_force_minimum_across_blocks_and_without_the_excluded_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(37, 5)).astype(np.float32)
    queries = rng.normal(size=(11, 5)).astype(np.float32)
    monkeypatch.setattr(coverage, "QUERY_CHUNK", 4)
    monkeypatch.setattr(coverage, "DATA_CHUNK", 6)  # blocks that split the data and the queries unevenly
    np.testing.assert_allclose(nearest_distances(queries, data), brute_force(queries, data), atol=1e-5)
    # A row of the data is at distance 0 from itself, unless it is left out.
    np.testing.assert_allclose(nearest_distances(data[10:14], data), 0.0, atol=1e-3)
    kept = np.concatenate([data[:10], data[14:]])
    np.testing.assert_allclose(
        nearest_distances(data[10:14], data, exclude=(10, 14)), brute_force(data[10:14], kept), atol=1e-5
    )
    np.testing.assert_allclose(
        nearest_distances(queries, data, exclude=(0, 30)), brute_force(queries, data[30:]), atol=1e-5
    )
    with pytest.raises(ValueError, match="no data rows"):
        nearest_distances(queries, data, exclude=(0, 37))


def test_episodes_end_at_terminals_and_where_the_next_transition_starts_elsewhere(tmp_path: Path) -> None:
    """The small file's episodes: 60 and 80 steps end by a time limit, whose final step Q-learning transitions
    drop, 45 and 35 by a terminal, which they keep, but d4rl's loop stops before the file's last row."""
    dataset = load_dataset(f"local:{write_small_d4rl_file(tmp_path / 'hopper-tiny.hdf5', env='hopper')}")
    assert len(dataset.transitions) == 59 + 45 + 79 + 34
    np.testing.assert_array_equal(episode_ends(dataset), np.cumsum([59, 45, 79, 34]))


def states_of(states: np.ndarray, ends: list[int], mean: float = 0.0, std: float = 1.0) -> DatasetStates:
    dim = states.shape[1]
    return DatasetStates(
        "sha",
        np.full(dim, mean),
        np.full(dim, std),
        states.astype(np.float32),
        np.zeros((len(states), 1)),
        np.asarray(ends),
    )


def test_the_datas_own_row_measures_episodes_against_the_others_and_counts_the_upside_down_states() -> None:
    """Three episodes on a line, one step apart within each; the middle one 0.5 beyond the first's end. Each
    episode against the others: its states' nearest neighbours are in another episode, never in itself."""
    first = np.arange(0.0, 3.0)  # 0 1 2
    middle = np.arange(3.5, 6.5)  # 3.5 4.5 5.5
    last = np.arange(8.5, 10.5)  # 8.5 9.5
    line = np.concatenate([first, middle, last])
    states = np.stack([line, np.zeros_like(line)], axis=1)
    # Pitch, entry 1 of the raw state, as the dataset normalized it with mean 0.1 and std 2.
    states[:, 1] = (np.array([0.0, 2.0, -1.0, 0.0, -2.0, 0.0, 0.0, 3.0]) - 0.1) / 2.0
    data = states_of(states, [3, 6, 8])
    data = DatasetStates(
        data.sha256, np.array([0.0, 0.1]), np.array([1.0, 2.0]), data.states, data.actions, data.episode_ends
    )

    row = data_coverage("local:line", "line (local)", data, pitch_index=1, reference_episodes=20)
    own = np.concatenate(
        [
            brute_force(data.states[:3], data.states[3:]),
            brute_force(data.states[3:6], np.concatenate([data.states[:3], data.states[6:]])),
            brute_force(data.states[6:], data.states[:6]),
        ]
    )
    assert row.reference_episodes == 3 and row.episodes == 3 and row.transitions == 8
    assert row.median_distance == pytest.approx(np.median(own), abs=1e-5)
    assert row.threshold == pytest.approx(np.quantile(own, 0.99), abs=1e-5)
    assert row.off_data == pytest.approx(1 / 8)  # only the largest of 8 distances lies beyond their 99th percentile
    np.testing.assert_allclose(raw_pitch(data.states, data, 1), [0.0, 2.0, -1.0, 0.0, -2.0, 0.0, 0.0, 3.0], atol=1e-6)
    assert row.upside_down == pytest.approx(3 / 8)  # |pitch| > pi/2: 2.0, -2.0 and 3.0
    assert row.length == pytest.approx(8 / 3)
    assert upside_down_share(np.array([math.pi / 2, -math.pi / 2 - 1e-6, 0.0, 4.0])) == pytest.approx(0.5)

    with pytest.raises(BenchError, match="holds one episode"):
        data_coverage("local:one", "one", states_of(states, [8]), pitch_index=1, reference_episodes=5)


def test_the_table_puts_the_datas_own_row_above_each_datasets_actors_in_percent() -> None:
    datasets = {"local:a": DatasetCoverage("local:a", "a (local)", 1000, 4, 4, 0.25, 0.8, 0.01, 0.0, 250.0, "s")}

    def actor(arch: str, seed: int, off: float, score: float) -> ActorCoverage:
        return ActorCoverage(
            f"r/{arch}/{seed}",
            "local:a",
            "a (local)",
            arch,
            seed,
            10,
            10 * seed,
            score,
            1000.0,
            1.5,
            off,
            0.9,
            0.8,
            "x",
            "s",
        )

    text = to_markdown(
        coverage_table([actor("kan", 0, 0.8, 3.0), actor("kan", 1, 0.9, 5.0), actor("mlp", 0, 0.1, 30.0)], datasets)
    )
    rows = [line for line in text.splitlines() if line.startswith("| ") and ":--" not in line][1:]
    assert rows[0] == f"| a (local) | {DATA_ROW} |  | 0.25 | 1 | 0 | 250 |  |"
    assert rows[1] == "|  | kan | 2 | 1.50 ± 0.00 | 85 ± 7 | 90 ± 0 | 1000 ± 0 | 4.0 ± 1.4 |"
    assert rows[2] == "|  | mlp | 1 | 1.50 | 10 | 90 | 1000 | 30.0 |"
    assert "off the data beyond distance 0.80, measured on 4 of its episodes" in text
    assert "Fewer seeds than the 2 of the fullest rows: a (local) mlp (1)." in text
    assert "Spearman" not in text  # three actors are too few for a correlation

    # Five or more: the score's rank correlation with the share off the data, per dataset.
    five = [actor("kan", s, off, score) for s, (off, score) in enumerate([(0.1, 9.0), (0.3, 7.0), (0.2, 8.0)])]
    five += [actor("mlp", s, off, score) for s, (off, score) in enumerate([(0.9, 1.0), (0.5, 6.0)])]
    assert score_off_data_correlations(five) == {"local:a": (5, pytest.approx(-1.0))}
    notes = coverage_table(five, datasets).notes
    assert "Spearman's rank correlation of the score with the share off the data: a (local) -1.00 (5 actors)." in notes
    tied = [actor("kan", s, 0.5, 1.0 + s) for s in range(5)]
    assert score_off_data_correlations(tied) == {}


def test_the_command_replays_each_actors_evaluations_and_keeps_unchanged_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    results = tmp_path / "results" / "tiny"
    short = {"steps": 2, "epoch_steps": 2, "eval_every": 2}
    for arch in ("mlp-small", "kan-small"):
        train_cell(tiny_config(data, arch=arch, **short), results / "hopper-tiny" / arch / "seed0.json", progress=False)
    tables = tmp_path / "tables"
    command = coverage_command(tmp_path, results, reference_episodes=3)

    assert main(command) == 0
    out = capsys.readouterr()
    assert "episodes of 2 trained actor(s)" in out.out and "kan-small seed 0: score " in out.err
    document = json.loads((tables / "coverage.json").read_text())
    (dataset,) = document["datasets"].values()
    assert dataset["episodes"] == 4 and dataset["reference_episodes"] == 3
    for row in document["actors"]:
        record = json.loads(Path(row["record"]).read_text())
        # The actor's episodes are its record's final evaluation, replayed: the same seeds, the same score.
        assert (row["episodes"], row["eval_seed"]) == (2, 0)
        assert row["score"] == pytest.approx(record["final_score"], rel=1e-9)
        assert row["median_distance"] > 0 and 0 <= row["off_data"] <= 1 and 0 <= row["upside_down"] <= 1
    assert (tables / "table9_coverage.md").exists() and (tables / "table9_coverage.tex").exists()
    assert (tmp_path / "figures" / "coverage.png").stat().st_size > 0 and (
        tmp_path / "figures" / "coverage.pdf"
    ).exists()
    assert f"wrote coverage.pdf, coverage.png to {tmp_path / 'figures'}" in out.out

    data.rename(tmp_path / "elsewhere.hdf5")  # the data is gone: only kept numbers can fill the table
    assert main(command) == 0
    out = capsys.readouterr()
    assert "(2 kept from the earlier coverage.json" in out.out and out.err.count("(kept from the earlier") == 2
    assert json.loads((tables / "coverage.json").read_text()) == document
    (tmp_path / "elsewhere.hdf5").rename(data)

    # Other episodes are another measurement: run again, and the left-out architecture's entry is carried.
    assert main([*command, "--episodes", "1", "--architectures", "mlp-small"]) == 0
    out = capsys.readouterr()
    assert "kept" not in out.out and "mlp-small seed 0: score" in out.err and "kan-small" not in out.err
    again = json.loads((tables / "coverage.json").read_text())
    by_arch = {a["arch"]: a for a in again["actors"]}
    assert by_arch["mlp-small"]["episodes"] == 1 and by_arch["kan-small"] == document["actors"][0]

    assert main([*command, "--episodes", "0"]) == 2
    assert "--episodes must be at least 1" in capsys.readouterr().err

    # Another number of the data's episodes sets another threshold: every actor again, then kept; 20 asked of a
    # file of 4 episodes measures all 4.
    more = [*command[:-1], "20"]
    assert main(more) == 0
    assert "kept" not in capsys.readouterr().out
    assert json.loads((tables / "coverage.json").read_text())["datasets"][dataset["dataset"]]["reference_episodes"] == 4
    assert main(more) == 0
    assert "(2 kept from the earlier coverage.json" in capsys.readouterr().out
    (tables / "coverage.json").write_text(json.dumps({"actors": [{"record": 3}], "datasets": {}}))
    assert main(command) == 2  # a file this version cannot read is never silently replaced
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a coverage.json" in err and "--recompute" in err
    assert main([*command, "--recompute"]) == 0


def test_datasets_narrow_the_table_and_the_file_keeps_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results" / "tiny"
    names = []
    for index, name in enumerate(("hopper-a", "hopper-b")):
        data = write_small_d4rl_file(tmp_path / f"{name}.hdf5", env="hopper", seed=index)
        config = tiny_config(data, steps=2, epoch_steps=2, eval_every=2, eval_episodes=1)
        train_cell(config, results / name / "mlp-small" / "seed0.json", progress=False)
        names.append(config.dataset)
    tables = tmp_path / "tables"
    command = coverage_command(tmp_path, results, reference_episodes=2)

    assert main([*command, "--datasets", names[1]]) == 0
    assert "hopper-a" not in capsys.readouterr().err
    only_b = json.loads((tables / "coverage.json").read_text())
    assert list(only_b["datasets"]) == [names[1]] and [a["dataset"] for a in only_b["actors"]] == [names[1]]
    table = (tables / "table9_coverage.md").read_text()
    assert "hopper-a" not in table and f"Narrowed with --datasets {names[1]}: the folder holds other" in table

    assert main([*command, "--datasets", names[0]]) == 0
    capsys.readouterr()
    both = json.loads((tables / "coverage.json").read_text())
    assert sorted(both["datasets"]) == sorted(names)  # b's numbers stay in the file, out of the table
    assert only_b["actors"][0] in both["actors"] and "hopper-b" not in (tables / "table9_coverage.md").read_text()

    assert main([*command, "--datasets", names[1][:-6]]) == 2
    err = capsys.readouterr().err
    assert "--datasets: " in err and "has no trained actor under" in err and names[1] in err


def test_an_interrupted_run_keeps_the_actors_it_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """coverage.json is written after every actor, so a run stopped halfway (a minute or more per actor on a
    grid's data) resumes where it stopped; an actor measured against another threshold is measured again."""
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    results = tmp_path / "results" / "tiny"
    for seed in (0, 1):
        config = tiny_config(data, seed=seed, steps=2, epoch_steps=2, eval_every=2, eval_episodes=1)
        train_cell(config, results / "hopper-tiny" / "mlp-small" / f"seed{seed}.json", progress=False)
    tables = tmp_path / "tables"
    command = coverage_command(tmp_path, results, reference_episodes=3)

    measure = coverage.visited_states
    calls: list[int] = []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return measure(*args, **kwargs)

    monkeypatch.setattr(coverage, "visited_states", stopped_at_the_second)
    assert main(command) == 130
    partial = json.loads((tables / "coverage.json").read_text())
    assert [a["seed"] for a in partial["actors"]] == [0] and len(partial["datasets"]) == 1
    monkeypatch.setattr(coverage, "visited_states", measure)
    capsys.readouterr()
    assert main(command) == 0
    out = capsys.readouterr()
    assert "(1 kept from the earlier coverage.json" in out.out and "seed 1: score" in out.err
    whole = json.loads((tables / "coverage.json").read_text())
    assert whole["actors"][0] == partial["actors"][0] and [a["seed"] for a in whole["actors"]] == [0, 1]

    # An entry whose threshold is not its dataset row's (measured against other reference episodes) is not kept.
    whole["actors"][1]["threshold"] += 0.5
    (tables / "coverage.json").write_text(json.dumps(whole))
    assert main(command) == 0
    assert "(1 kept from the earlier coverage.json" in capsys.readouterr().out


def test_the_figure_draws_one_panel_per_dataset(tmp_path: Path) -> None:
    """Four datasets: two rows of three panels, the sixth left empty; an architecture absent from one dataset and an
    actor upside down for half its steps (a filled marker) do not break it."""
    datasets = {
        f"local:d{i}": DatasetCoverage(f"local:d{i}", f"d{i} (local)", 100, 4, 4, 0.3, 1.0, 0.01, 0.0, 25.0, "s")
        for i in range(4)
    }
    actors = [
        ActorCoverage(
            f"r{i}{arch}{seed}",
            f"local:d{i}",
            f"d{i} (local)",
            arch,
            seed,
            10,
            0,
            20.0 - seed,
            1000.0,
            0.5,
            0.2 * seed,
            0.5 * seed,
            1.0,
        )
        for i in range(4)
        for arch in ("mlp", "kan")
        for seed in (0, 1, 2)
        if (i, arch) != (3, "kan")
    ]
    paths = coverage_figure(actors, datasets, tmp_path / "figures")
    assert [p.name for p in paths] == ["coverage.pdf", "coverage.png"] and all(p.stat().st_size > 0 for p in paths)
