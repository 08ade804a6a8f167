"""Table 5, actions against the data: the error and R^2 by hand, the table, actions.json and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.actions import CONSTANT, ActorActions, DatasetActions, action_errors, actions_table, constant_policy_mse
from bench.cli import main
from bench.data.loader import load_dataset
from bench.deploy import ActorRecords, expected_cells, normalized_states
from bench.report.tables import MISSING, to_markdown
from bench.train import load_trained_actor, train_cell
from tests.d4rl_files import write_small_d4rl_file
from tests.test_train import tiny_config


class FixedActor(torch.nn.Module):
    """An actor whose action is the first two state features, to check the error by hand."""

    def act(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, :2]


def test_the_error_is_the_mean_squared_difference_per_transition_and_the_constant_its_variance() -> None:
    states = np.array([[0.5, -0.5, 9.0], [1.0, 0.0, 9.0], [0.0, 0.25, 9.0]], dtype=np.float32)
    actions = np.array([[0.5, 0.5], [0.0, 0.0], [0.0, 0.75]])
    errors = action_errors(FixedActor(), states, actions)
    np.testing.assert_allclose(errors, [(0 + 1) / 2, (1 + 0) / 2, (0 + 0.25) / 2])

    expected = np.mean([np.mean((actions[:, j] - actions[:, j].mean()) ** 2) for j in range(2)])
    assert constant_policy_mse(actions) == pytest.approx(expected)
    assert constant_policy_mse(np.ones((4, 3))) == 0.0


def test_the_table_puts_the_constant_policy_above_each_datasets_rows() -> None:
    datasets = {"local:a": DatasetActions("local:a", "a (local)", 100, 3, 0.3)}
    actors = [
        ActorActions("r0", "local:a", "a (local)", "kan", 0, 0.27, 0.1, 5.0),
        ActorActions("r1", "local:a", "a (local)", "mlp", 0, 0.15, 0.5, 40.0),
        ActorActions("r2", "local:a", "a (local)", "kan", 1, 0.25, 1 - 0.25 / 0.3, None),
    ]
    text = to_markdown(actions_table(actors, datasets))
    rows = [line for line in text.splitlines() if line.startswith("| ") and ":--" not in line][1:]
    assert rows[0] == f"| a (local) | {CONSTANT} |  | 0.300 | 0 |  |"
    assert rows[1].startswith("|  | kan | 2 | 0.260 ± 0.014 | 0.13 ± 0.05 |") and rows[1].endswith(f"| {MISSING} |")
    assert rows[2] == "|  | mlp | 1 | 0.150 | 0.50 | 40.0 |"
    assert "a (local): 100 transitions, 3 action dimensions." in text


def test_the_table_names_missing_actors_and_rows_with_fewer_seeds() -> None:
    """A grid still training leaves rows short or absent; the notes say which, so no row passes for a whole one."""
    datasets = {
        "local:a": DatasetActions("local:a", "a (local)", 100, 3, 0.3),
        "local:b": DatasetActions("local:b", "b (local)", 100, 3, 0.3),
    }

    def actor(dataset: str, arch: str, seed: int) -> ActorActions:
        return ActorActions(f"{dataset}/{arch}/{seed}", dataset, dataset[6:] + " (local)", arch, seed, 0.2, 0.3, 9.0)

    whole = [actor(d, arch, seed) for d in ("local:a", "local:b") for arch in ("kan", "mlp") for seed in (0, 1, 2)]
    assert not [note for note in actions_table(whole, datasets).notes if "seeds" in note or "no trained" in note]

    partial = [a for a in whole if (a.dataset, a.arch) != ("local:b", "mlp") and a.record != "local:a/kan/2"]
    notes = actions_table(partial, datasets).notes
    assert notes[2:] == [
        "b (local): no trained actor of mlp (not finished, or not run).",
        "Fewer seeds than the 3 of the fullest rows: a (local) kan (2).",
    ]

    # With the grid file's cells (the selection's), the notes also name what no record shows yet: an architecture
    # without any actor, a dataset without any, and seeds the fullest rows lack too.
    grid = ActorRecords({}, [], {}, [], ["kan", "mlp", "rbf"], ["local:a", "local:b", "local:c"], 5)
    assert actions_table(whole, datasets, selection=grid).notes[2:] == [
        "a (local): no trained actor of rbf (not finished, or not run).",
        "b (local): no trained actor of rbf (not finished, or not run).",
        "No trained actor yet on local:c (not finished, or not run).",
        "Fewer seeds than the grid file's 5: a (local) kan (3); a (local) mlp (3); b (local) kan (3); "
        "b (local) mlp (3).",
    ]
    complete = ActorRecords({}, [], {}, [], ["kan", "mlp"], ["local:a", "local:b"], 3)
    assert actions_table(whole, datasets, selection=complete).notes[2:] == []


def test_the_expected_cells_come_from_the_grid_file_labelled_and_narrowed() -> None:
    """A multi-algorithm grid's architectures are labelled per algorithm as its tables name them; --architectures
    (a label or a bare name) and --datasets narrow them; records without a grid file expect nothing."""
    root = Path(__file__).resolve().parents[1] / "results"
    archs, datasets, seeds = expected_cells(root / "algorithms-medium-expert")
    assert len(archs) == 12 and archs[:2] == ["BC mlp-c2", "BC kan1-c2"] and "IQL matched-c2" in archs
    assert len(datasets) == 3 and seeds == 5
    narrowed = expected_cells(
        root / "algorithms-medium-expert", ["mlp-c2", "IQL kan1-c2"], ["local:hopper-medium-expert"]
    )
    assert narrowed == (["BC mlp-c2", "TD3+BC mlp-c2", "IQL mlp-c2", "IQL kan1-c2"], ["local:hopper-medium-expert"], 5)
    assert expected_cells(root / "cql-alpha-medium-expert-absent") == ([], [], 0)


def test_the_command_measures_every_trained_actor_against_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    results = tmp_path / "results" / "tiny"
    short = {"steps": 2, "epoch_steps": 2, "eval_every": 2}
    for arch in ("mlp-small", "kan-small"):
        train_cell(tiny_config(data, arch=arch, **short), results / "hopper-tiny" / arch / "seed0.json", progress=False)
    tables = tmp_path / "tables"

    assert main(["actions", str(results), "--tables", str(tables)]) == 0
    out = capsys.readouterr()
    assert "actions of 2 trained actor(s)" in out.out and "kan-small seed 0: MSE " in out.err
    document = json.loads((tables / "actions.json").read_text())
    assert [a["arch"] for a in document["actors"]] == ["kan-small", "mlp-small"]  # by name without a grid file
    (dataset,) = document["datasets"].values()
    loaded = load_dataset(f"local:{data}")
    assert dataset["transitions"] == len(loaded.transitions.actions)
    assert dataset["constant_mse"] == pytest.approx(constant_policy_mse(loaded.transitions.actions))
    for row in document["actors"]:
        actor, record = load_trained_actor(Path(row["record"]))
        states = normalized_states(loaded, record["config"]["normalize_states"])
        with torch.no_grad():
            predicted = actor.act(torch.as_tensor(states)).double().numpy()
        mse = float(np.mean((predicted - loaded.transitions.actions) ** 2))
        assert row["mse"] == pytest.approx(mse, rel=1e-9) and mse > 0
        assert row["r2"] == pytest.approx(1 - mse / dataset["constant_mse"])
        assert row["final_score"] == record["final_score"]
    assert (tables / "table5_actions.md").exists() and (tables / "table5_actions.tex").exists()

    for selection in ("kan-small", "mlp-small,kan-small"):
        assert main(["actions", str(results), "--tables", str(tables), "--architectures", selection]) == 0
        table = (tables / "table5_actions.md").read_text()
        assert ("mlp-small" in table, "kan-small" in table) == ("," in selection, True)
        assert ("Narrowed with --architectures kan-small: the folder holds other" in table) == ("," not in selection)
        # The architectures left out of the table keep their numbers, whose data a later run may lack.
        actors = json.loads((tables / "actions.json").read_text())["actors"]
        assert ",".join(a["arch"] for a in actors) == (
            "mlp-small,kan-small" if "," in selection else "kan-small,mlp-small"
        )
        assert sorted(map(json.dumps, actors)) == sorted(map(json.dumps, document["actors"]))
    capsys.readouterr()
    assert main(["actions", str(results), "--tables", str(tables), "--architectures", "kan-smal"]) == 2
    assert "'kan-smal' has no trained actor under" in capsys.readouterr().err
    assert main(["actions", str(tmp_path / "tables"), "--tables", str(tables)]) == 2
    assert "no finished record with its final actor" in capsys.readouterr().err


def test_a_rerun_keeps_the_numbers_of_unchanged_actors_without_their_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Table 5 of a grid whose data only some CPUs regenerate (recipe 1) stays whole: an actor whose file and
    data have the digests of its earlier entry keeps it, without the data; a changed actor is computed again."""
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    results = tmp_path / "results" / "tiny"
    short = {"steps": 2, "epoch_steps": 2, "eval_every": 2}
    for seed in (0, 1):
        train_cell(
            tiny_config(data, seed=seed, **short),
            results / "hopper-tiny" / "mlp-small" / f"seed{seed}.json",
            progress=False,
        )
    tables = tmp_path / "tables"
    command = ["actions", str(results), "--tables", str(tables)]
    assert main(command) == 0
    first = json.loads((tables / "actions.json").read_text())
    assert all(len(a["actor_sha256"]) == 64 and len(a["dataset_sha256"]) == 64 for a in first["actors"])
    assert [d["sha256"] for d in first["datasets"].values()] == [load_dataset(f"local:{data}").sha256]
    capsys.readouterr()

    data.rename(tmp_path / "elsewhere.hdf5")  # the data is gone: only kept numbers can fill the table
    assert main(command) == 0
    out = capsys.readouterr()
    assert "(2 kept from the earlier actions.json" in out.out and out.err.count("(kept from the earlier") == 2
    assert json.loads((tables / "actions.json").read_text()) == first

    assert main([*command, "--recompute"]) == 2  # recomputing needs the data
    assert "hopper-tiny" in capsys.readouterr().err
    (tmp_path / "elsewhere.hdf5").rename(data)

    actor_file = results / "hopper-tiny" / "mlp-small" / "seed1.actor.pt"
    weights = torch.load(actor_file, weights_only=True)
    torch.save({k: v + 0.5 for k, v in weights.items()}, actor_file)
    assert main(command) == 0
    out = capsys.readouterr()
    assert "(1 kept" in out.out and "seed 1: MSE" in out.err and out.err.count("(kept from the earlier") == 1
    second = json.loads((tables / "actions.json").read_text())
    assert second["actors"][0] == first["actors"][0]
    assert second["actors"][1]["actor_sha256"] != first["actors"][1]["actor_sha256"]
    assert second["actors"][1]["mse"] != first["actors"][1]["mse"]

    (tables / "actions.json").write_text(json.dumps({"actors": [{"record": 3}], "datasets": []}))
    assert main(command) == 2  # a file this version cannot read is never silently replaced
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tables / 'actions.json'} is not an actions.json" in err and "--recompute" in err
    assert main([*command, "--recompute"]) == 0
    assert json.loads((tables / "actions.json").read_text())["actors"][1]["mse"] == second["actors"][1]["mse"]
