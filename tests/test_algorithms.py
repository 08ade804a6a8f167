"""The algorithm seam: CQL's records as before, TD3+BC, IQL and BC through the same trainer, records, resume and CLI."""

from __future__ import annotations

import copy
import io
import json
import pickle
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from bench import train
from bench.agents.bc import BCConfig
from bench.agents.cql import CQLConfig
from bench.agents.registry import ALGORITHMS, get_algorithm
from bench.cli import main
from bench.errors import BenchError
from bench.grid.run import run_grid
from bench.grid.spec import Cell, load_grid
from bench.grid.store import ResultsStore
from bench.nets.heads import DeterministicActor, GaussianActor, TanhGaussianActor
from bench.report.build import build_report
from bench.report.records import ALGORITHM_LABELS, load_records
from bench.train import RunConfig, apply_overrides, config_fingerprint, run_config_from_dict, train_group
from tests import report_fixtures
from tests.d4rl_files import write_small_d4rl_file
from tests.interrupts import interrupted_on_call
from tests.test_train import comparable
from tests.test_train import tiny_config as cql_tiny_config

# A CQL RunConfig's record `config` and fingerprint, computed before other algorithms existed: they must not change
# (a checkpoint resumes only under the same fingerprint, and reports compare the `config` dicts). The fingerprint
# has since left out the arch file's path; the one with it (`with_arch_file=True`) is still pinned, since
# checkpoints written under it still resume.
PINNED_CQL_KEYS = [
    "dataset",
    "arch",
    "seed",
    "steps",
    "epoch_steps",
    "eval_every",
    "eval_episodes",
    "checkpoint_every",
    "device",
    "normalize_states",
    "normalize_reward",
    "compile",
    "arch_file",
    "cql",
]
PINNED_CQL_SETTINGS = [
    "batch_size",
    "discount",
    "policy_lr",
    "qf_lr",
    "soft_target_update_rate",
    "target_update_period",
    "num_critics",
    "orthogonal_init",
    "use_automatic_entropy_tuning",
    "alpha_multiplier",
    "target_entropy",
    "backup_entropy",
    "cql_alpha",
    "cql_n_actions",
    "cql_importance_sample",
    "cql_temp",
    "cql_max_target_backup",
    "cql_clip_diff_min",
    "cql_clip_diff_max",
    "cql_lagrange",
    "cql_target_action_gap",
]


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_d4rl_file(tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5", env="hopper")


def tiny_config(path: Path, algo: str, **changes) -> RunConfig:
    """test_train's tiny cell (6 steps in epochs of 2, evaluations at 4 and 6) under `algo`, a KAN actor."""
    settings = apply_overrides(ALGORITHMS[algo].config(), ["batch_size=16"])
    return cql_tiny_config(path, **{"arch": "kan-small", "algo": algo, algo: settings, **changes})


def test_cql_config_and_fingerprint_are_those_from_before_other_algorithms() -> None:
    config = RunConfig(dataset="local:hopper-medium", arch="mlp", seed=3)
    data = config.to_dict()
    assert list(data) == PINNED_CQL_KEYS and list(data["cql"]) == PINNED_CQL_SETTINGS
    assert config_fingerprint(config, with_arch_file=True) == "1f4e90a651c082d2"
    assert config_fingerprint(config) == "b2a446640c5d7b56"
    changed = RunConfig(
        dataset="d4rl:walker2d-medium-v2",
        arch="kan1-mlp",
        seed=0,
        steps=20_000,
        epoch_steps=500,
        eval_every=5_000,
        eval_episodes=5,
        device="cpu",
        normalize_reward=True,
        cql=apply_overrides(CQLConfig(), ["batch_size=64", "cql_alpha=5"]),
    )
    assert config_fingerprint(changed, with_arch_file=True) == "5c76c462f5d784cc"
    assert config_fingerprint(changed) == "b2861e12e4882ca2"


@pytest.mark.parametrize("algo", ["td3bc", "iql", "bc"])
def test_other_algorithms_name_themselves_and_keep_only_their_settings(algo: str) -> None:
    data = RunConfig(dataset="local:hopper-medium", arch="mlp", algo=algo).to_dict()
    assert data["algo"] == algo and algo in data
    assert not {"cql", *ALGORITHMS} - {algo} & data.keys()
    assert config_fingerprint(RunConfig(dataset="local:hopper-medium", arch="mlp", algo=algo)) != "b2a446640c5d7b56"


def test_unknown_algorithm_is_refused_with_the_known_ones() -> None:
    with pytest.raises(BenchError, match="did you mean 'td3bc'"):
        get_algorithm("td3b")
    with pytest.raises(BenchError, match="cql, td3bc, iql"):
        RunConfig(dataset="local:x", arch="mlp", algo="awac").validate()


def test_overrides_take_the_algorithms_own_settings() -> None:
    config = RunConfig(dataset="x", arch="mlp", algo="td3bc")
    assert apply_overrides(config.td3bc, ["alpha=4", "td3bc.policy_freq=3"]).alpha == 4.0
    with pytest.raises(BenchError, match="cql_alpha"):
        apply_overrides(config.td3bc, ["cql_alpha=5"])
    with pytest.raises(BenchError, match="bad IQL setting"):
        apply_overrides(config.iql, ["iql_tau=1.5"])


@pytest.mark.parametrize(
    ("algo", "actor_type", "diagnostics"),
    [
        ("td3bc", DeterministicActor, ("critic_loss", "actor_loss", "bc_loss", "lmbda", "q_data", "target_q")),
        ("iql", GaussianActor, ("value_loss", "q_loss", "actor_loss", "advantage", "exp_adv", "actor_lr")),
        ("bc", DeterministicActor, ("actor_loss",)),
    ],
)
def test_group_records_name_the_algorithm_and_are_deterministic(
    hopper_file: Path, tmp_path: Path, algo: str, actor_type: type, diagnostics: tuple[str, ...]
) -> None:
    outs = [tmp_path / "a" / f"seed{s}.json" for s in (0, 1)]
    records = train_group(tiny_config(hopper_file, algo), [0, 1], outs, progress=False)
    again_outs = [tmp_path / "b" / f"seed{s}.json" for s in (0, 1)]
    again = train_group(tiny_config(hopper_file, algo), [0, 1], again_outs, progress=False)
    assert [comparable(r) for r in records] == [comparable(r) for r in again]
    assert records[0]["curve"] != records[1]["curve"]
    for seed, out, record in zip((0, 1), outs, records, strict=True):
        assert json.loads(out.read_text()) == record and record["status"] == "done"
        assert record["cell"] == {"dataset": f"local:{hopper_file}", "arch": "kan-small", "seed": seed, "algo": algo}
        assert record["config"]["algo"] == algo and record["config"][algo]["batch_size"] == 16
        assert "cql" not in record["config"]
        assert [p["step"] for p in record["curve"]] == [4, 6]
        for name in diagnostics:
            assert len(record["diagnostics"][name]) == 3, name
        params = record["parameters"]
        assert params["actor_network"] == 11 * 4 * 10 + 4 * 3 * 10  # KAN 11-4-3: one output per action
        # BC builds no critic.
        assert params["critic"] == (0 if algo == "bc" else (14 * 64 + 64) + (64 * 64 + 64) + 65)
        assert ("value" in params) == (algo == "iql")
        actor, loaded = train.load_trained_actor(out)
        assert loaded == record and isinstance(actor, actor_type) and not actor.training
        assert actor.act(torch.zeros(2, 11)).shape == (2, 3)


# TD3+BC updates its actor every 3rd step here, so checkpoints (every 2 steps) fall between actor updates too.
@pytest.mark.parametrize(("algo", "settings"), [("td3bc", ["policy_freq=3"]), ("iql", []), ("bc", [])])
def test_killed_group_resumes_to_the_uninterrupted_records(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algo: str, settings: list[str]
) -> None:
    config = tiny_config(hopper_file, algo)
    setattr(config, algo, apply_overrides(getattr(config, algo), settings))
    reference = train_group(config, [0, 1], [tmp_path / "ref" / f"seed{s}.json" for s in (0, 1)], progress=False)
    outs = [tmp_path / "killed" / f"seed{s}.json" for s in (0, 1)]
    real = train._train_epoch
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(real, 3))
    with pytest.raises(KeyboardInterrupt):
        train_group(config, [0, 1], outs, progress=False)
    assert train.group_checkpoint_path(outs).exists()
    monkeypatch.setattr(train, "_train_epoch", real)
    resumed = train_group(config, [0, 1], outs, progress=False)
    assert [comparable(r) for r in resumed] == [comparable(r) for r in reference]


def test_a_checkpoint_of_another_algorithm_is_refused(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "seed0.json"
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(train._train_epoch, 2))
    with pytest.raises(KeyboardInterrupt):
        train.train_cell(tiny_config(hopper_file, "td3bc"), out, progress=False)
    monkeypatch.undo()
    with pytest.raises(BenchError, match="different configuration"):
        train.train_cell(tiny_config(hopper_file, "iql"), out, progress=False)


def test_cql_records_keep_their_layout(hopper_file: Path, tmp_path: Path) -> None:
    record = train.train_cell(cql_tiny_config(hopper_file), tmp_path / "seed0.json", progress=False)
    assert "algo" not in record["cell"] and "algo" not in record["config"]
    assert set(record["config"]) == set(PINNED_CQL_KEYS) and set(record["parameters"]) == {
        "actor",
        "actor_network",
        "critic",
        "critics_total",
    }
    actor, _ = train.load_trained_actor(tmp_path / "seed0.json")
    assert isinstance(actor, TanhGaussianActor)


def test_run_cli_takes_the_algorithm_and_its_settings(hopper_file: Path, tmp_path: Path, capsys) -> None:
    def argv(algo: str, settings: list[str], out: str) -> list[str]:
        args = ["run", "--dataset", f"local:{hopper_file}", "--arch", "mlp-small", "--algo", algo, "--steps", "2"]
        args += ["--epoch-steps", "2", "--eval-every", "2", "--eval-episodes", "1", "--device", "cpu"]
        return [*args, "--no-progress", *(f"--set={s}" for s in settings), "--out", str(tmp_path / out)]

    assert main(argv("iql", ["batch_size=8", "iql_deterministic=true"], "iql.json")) == 0
    record = json.loads((tmp_path / "iql.json").read_text())
    assert record["config"]["algo"] == "iql" and record["config"]["iql"]["iql_deterministic"] is True
    assert "IQL" in capsys.readouterr().out
    assert main(argv("awac", [], "x.json")) == 2
    assert "awac" in capsys.readouterr().err
    assert main(argv("td3bc", ["cql_alpha=5"], "y.json")) == 2
    assert "cql_alpha" in capsys.readouterr().err


def write_grid(folder: Path, text: str) -> Path:
    path = folder / "grid.yaml"
    path.write_text(text)
    return path


GRID = """
name: two
algo: [td3bc, iql]
architectures: [mlp-small, kan-small]
datasets: [local:hopper-random, local:walker2d-random]
seeds: [0, 1]
steps: 4
epoch_steps: 2
eval_every: 4
eval_episodes: 1
device: cpu
seeds_per_process: 2
td3bc: {batch_size: 16}
iql: {batch_size: 16}
"""


def test_a_grid_of_two_algorithms_scopes_its_overrides_and_keeps_the_records_apart(tmp_path: Path) -> None:
    overrides = "dataset_overrides:\n  local:hopper-random: {iql.tau: 0.001, iql.normalize_reward: true}\n"
    overrides += "architecture_overrides:\n  kan-small: {td3bc.tau: 0.01, policy_freq: 3}\n"
    spec = load_grid(write_grid(tmp_path, GRID + overrides))
    cells = spec.cells()
    assert len(cells) == 16 and [c.algo for c in cells[:8]] == ["td3bc"] * 4 + ["iql"] * 4
    iql_hopper = spec.run_config(Cell("local:hopper-random", "mlp-small", 0, "iql"))
    assert iql_hopper.algo == "iql" and iql_hopper.iql.tau == 0.001 and iql_hopper.normalize_reward
    td3bc_hopper = spec.run_config(Cell("local:hopper-random", "kan-small", 0, "td3bc"))
    assert td3bc_hopper.td3bc.tau == 0.01 and td3bc_hopper.td3bc.policy_freq == 3 and not td3bc_hopper.normalize_reward
    assert spec.record_overrides(Cell("local:hopper-random", "mlp-small", 0, "iql"))["applied"] == {
        "iql.tau": 0.001,
        "normalize_reward": True,
    }
    store = ResultsStore.for_grid(tmp_path / "results", spec)
    assert store.record_path(cells[4]).relative_to(tmp_path) == Path(
        "results/two/iql/local-hopper-random/mlp-small/seed0.json"
    )
    assert str(cells[4]) == "IQL mlp-small on local:hopper-random, seed 0"
    settings = spec.settings()
    assert settings["algorithms"] == ["td3bc", "iql"] and settings["iql"]["batch_size"] == 16 and "cql" not in settings
    with pytest.raises(BenchError, match="dataset_overrides also sets tau"):
        load_grid(
            write_grid(
                tmp_path,
                GRID + "dataset_overrides:\n  local:hopper-random: {iql.tau: 0.001}\n"
                "architecture_overrides:\n  mlp-small: {tau: 0.01}\n",
            )
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("algo: awac\n", "line 2, key 'algo': unknown algorithm 'awac'"),
        ("algo: [iql, iql]\n", "listed twice"),
        ("algo: td3bc\niql: {beta: 1.0}\n", "settings of iql, which this grid does not train"),
        ("algo: td3bc\ntd3bc: {alpa: 1.0}\n", "did you mean 'alpha'"),
        ("algo: td3bc\ndataset_overrides:\n  local:hopper-random: {cql_alpha: 5}\n", "unknown setting"),
        ("algo: iql\ndataset_overrides:\n  local:hopper-random: {tau: 0.1, iql.tau: 0.2}\n", "sets tau twice"),
    ],
)
def test_grid_files_with_bad_algorithm_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    base = "name: bad\n" + text + "architectures: [mlp-small]\ndatasets: [local:hopper-random]\nseeds: [0]\nsteps: 4\n"
    base += "epoch_steps: 2\neval_every: 4\n"
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_grid(write_grid(tmp_path, base))


def test_a_cql_grid_resolves_as_before_other_algorithms(tmp_path: Path) -> None:
    spec = load_grid(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    settings = spec.settings()
    identity = ("dataset", "arch", "seed", "checkpoint_every", "arch_file")
    assert list(settings) == [k for k in PINNED_CQL_KEYS if k not in identity]
    resolved = spec.resolved()
    assert (
        "algorithms" not in resolved and "algorithms" not in settings and list(settings["cql"]) == (PINNED_CQL_SETTINGS)
    )
    store = ResultsStore.for_grid(tmp_path, spec)
    assert store.record_path(spec.cells()[0]).parent.parent.parent == tmp_path / spec.name


def test_a_grid_of_two_algorithms_runs_and_reports_per_algorithm(hopper_file: Path, tmp_path: Path) -> None:
    grid = GRID.replace("local:hopper-random, local:walker2d-random", f"local:{hopper_file}")
    grid = grid.replace("[mlp-small, kan-small]", "[mlp-small]\nbaseline: mlp-small")
    spec = load_grid(write_grid(tmp_path, grid))
    result = run_grid(spec, results=tmp_path / "results", workers=2, progress=False, out=io.StringIO())
    assert result.exit_code == 0 and result.outcomes["done"] == 4
    root = tmp_path / "results" / "two"
    records = sorted(root.rglob("seed*.json"))
    assert {p.relative_to(root).parts[0] for p in records} == {"td3bc", "iql"}
    summary = build_report(root, tmp_path / "tables", tmp_path / "figures", reps=50)
    assert summary.baseline == "TD3+BC mlp-small"
    assert set(summary.iqm) == {"TD3+BC mlp-small", "IQL mlp-small"}
    table1 = (tmp_path / "tables" / "table1_score.md").read_text()
    assert "| Dataset | TD3+BC mlp-small | IQL mlp-small |" in table1
    assert "Algorithms: TD3+BC, IQL" in table1
    table2 = (tmp_path / "tables" / "table2_parameters.md").read_text()
    assert "Value params" in table2 and "IQL's state-value network" in table2
    assert "Algorithms: TD3+BC, IQL" in (tmp_path / "figures" / "captions.md").read_text()
    # One algorithm's folder takes its cells and baseline from the grid file of the folder above.
    iql = build_report(root / "iql", None, None, reps=50)
    assert iql.baseline == "mlp-small" and set(iql.iqm) == {"mlp-small"} and iql.expected_source == "grid.yaml"
    next((root / "iql").rglob("seed1.json")).unlink()
    iql = build_report(root / "iql", None, None, reps=50)
    assert (iql.expected_runs, iql.scored_runs, len(iql.partial_cells)) == (2, 1, 1)


def as_algorithm(record: dict, algo: str, settings: dict) -> dict:
    """A fixture record of the report's tests, trained under `algo` with `settings` instead of CQL's."""
    record = copy.deepcopy(record)
    del record["config"]["cql"]
    record["config"].update({"algo": algo, algo: settings})
    record["cell"]["algo"] = algo
    return record


def test_the_report_compares_settings_within_an_algorithm_and_the_rest_across(tmp_path: Path) -> None:
    cql_records = report_fixtures.fixture_records()
    iql_records = [as_algorithm(r, "iql", {"beta": 3.0}) for r in cql_records]
    for record in iql_records:
        record["parameters"]["value"] = 4_993
    report_fixtures.write_records(tmp_path / "r" / "cql", cql_records)
    report_fixtures.write_records(tmp_path / "r" / "iql", iql_records)
    loaded = load_records(tmp_path / "r")
    assert loaded.algorithms == ["cql", "iql"] and loaded.architectures == ["CQL kan", "CQL mlp", "IQL kan", "IQL mlp"]
    assert loaded.config["iql.beta"] == 3.0 and loaded.config["cql.cql_alpha"] == 10.0
    assert loaded.runs.groupby("algo")["value_params"].count().to_dict() == {"cql": 0, "iql": len(iql_records)}
    other = as_algorithm(cql_records[0], "iql", {"beta": 1.0})
    report_fixtures.write_records(tmp_path / "r" / "other", [{**other, "cell": {**other["cell"], "seed": 7}}])
    with pytest.raises(BenchError, match=r"iql\.beta \(3\.0 vs 1\.0\)"):
        load_records(tmp_path / "r")
    shared = as_algorithm(cql_records[0], "iql", {"beta": 3.0})
    shared["config"]["steps"] = 10
    (tmp_path / "r" / "other").rename(tmp_path / "other")
    report_fixtures.write_records(tmp_path / "r" / "other", [{**shared, "cell": {**shared["cell"], "seed": 7}}])
    with pytest.raises(BenchError, match=r"steps \(2000 vs 10\)"):
        load_records(tmp_path / "r")


def test_captions_name_the_algorithms_in_the_grid_files_column_order(tmp_path: Path) -> None:
    cql_records = report_fixtures.fixture_records()
    report_fixtures.write_records(tmp_path / "r" / "cql", cql_records)
    report_fixtures.write_records(tmp_path / "r" / "iql", [as_algorithm(r, "iql", {}) for r in cql_records])
    loaded = load_records(tmp_path / "r")
    assert loaded.algorithm_phrase().startswith("Algorithms: CQL, IQL (")  # no grid file: the registry's order
    grid = {
        "algorithms": ["iql", "cql"],
        "architectures": sorted({r["cell"]["arch"] for r in cql_records}),
        "datasets": sorted({r["cell"]["dataset"] for r in cql_records}),
        "seeds": sorted({r["cell"]["seed"] for r in cql_records}),
    }
    (tmp_path / "r" / "grid.yaml").write_text(json.dumps(grid))
    loaded = load_records(tmp_path / "r")
    assert loaded.architectures[0].startswith("IQL ") and loaded.algorithm_phrase().startswith("Algorithms: IQL, CQL (")


def test_the_reports_algorithm_labels_are_the_registrys() -> None:
    assert {name: algorithm.label for name, algorithm in ALGORITHMS.items()} == ALGORITHM_LABELS


def test_the_parameter_table_shows_no_critic_for_bc(tmp_path: Path) -> None:
    cql_records = report_fixtures.fixture_records()
    bc_records = [as_algorithm(r, "bc", {"batch_size": 256, "actor_lr": 3e-4}) for r in cql_records]
    for record in bc_records:
        record["parameters"].update(critic=0, critics_total=0)
    report_fixtures.write_records(tmp_path / "r" / "cql", cql_records)
    report_fixtures.write_records(tmp_path / "r" / "bc", bc_records)
    build_report(tmp_path / "r", tmp_path / "tables", tmp_path / "figures", baseline="mlp", reps=50)
    rows = (tmp_path / "tables" / "table2_parameters.md").read_text().splitlines()
    bc_rows = [row for row in rows if "| BC " in row]
    cql_rows = [row for row in rows if "| CQL " in row]
    assert bc_rows and all("| none | — | — |" in row for row in bc_rows)
    assert cql_rows and not any("none" in row for row in cql_rows)
    assert "BC trains no critic" in "\n".join(rows)


def test_a_config_pickled_by_an_older_version_takes_the_defaults_of_settings_added_since() -> None:
    # A grid's parent pickles the configs; its workers import the code anew, perhaps changed since.
    config = RunConfig(dataset="local:x", arch="kan-small", seed=3, algo="td3bc")
    config.td3bc = apply_overrides(config.td3bc, ["alpha=4"])
    assert pickle.loads(pickle.dumps(config)) == config and copy.deepcopy(config) == config
    older = asdict(config)
    del older["bc"], older["td3bc"]["num_critics"]
    restored = run_config_from_dict(older)
    assert restored.bc == BCConfig() and restored.td3bc.num_critics == 2 and restored.td3bc.alpha == 4.0
    with pytest.raises(TypeError, match="gone"):
        run_config_from_dict({**asdict(config), "gone": 1})
