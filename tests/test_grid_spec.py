"""Grid files: parsing, validation with the line at fault, cell enumeration, the shipped configs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from bench.data.registry import D4RL_DATASETS, get_env_spec
from bench.errors import BenchError
from bench.grid.spec import Cell, dataset_slug, load_grid
from bench.nets.spec import build_network, count_parameters, get_architecture

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

GOOD = """\
name: tiny
architectures:
  - mlp-small
  - wide-kan:
      actor: kan[8]
      critic: mlp[32,32]
      kan: {grid_range: [-2, 2]}
  - kan-small
datasets:
  - local:hopper-random
  - d4rl:walker2d-medium-v2
seeds: [3, 1]
steps: 40
epoch_steps: 10
eval_every: 20
eval_episodes: 2
device: cpu
resources: {num_cpus: 0.5, num_gpus: 0.25}
cql:
  cql_alpha: 5
  policy_lr: 1e-4
"""


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_grid_is_parsed_and_enumerated_in_a_stable_order(tmp_path: Path) -> None:
    spec = load_grid(write(tmp_path, GOOD))
    assert spec.name == "tiny"
    assert list(spec.architectures) == ["mlp-small", "wide-kan", "kan-small"]
    assert spec.inline == {"wide-kan"}
    assert str(spec.architectures["wide-kan"].actor) == "kan[8]"
    assert spec.architectures["wide-kan"].kan.grid_range == (-2.0, 2.0)
    assert spec.cql.cql_alpha == 5.0 and spec.cql.policy_lr == 1e-4
    assert spec.resources.num_gpus == 0.25 and spec.resources.threads == 1

    cells = spec.cells()
    assert len(cells) == 3 * 2 * 2
    assert cells == load_grid(write(tmp_path, GOOD, "again.yaml")).cells()
    # Seed-major, then datasets, then architectures, each in file order.
    assert cells[:4] == [
        Cell("local:hopper-random", "mlp-small", 3),
        Cell("local:hopper-random", "wide-kan", 3),
        Cell("local:hopper-random", "kan-small", 3),
        Cell("d4rl:walker2d-medium-v2", "mlp-small", 3),
    ]
    assert {c.seed for c in cells[6:]} == {1}
    assert len(set(cells)) == len(cells)


def test_run_config_and_resolved_grid(tmp_path: Path) -> None:
    spec = load_grid(write(tmp_path, GOOD))
    inline = spec.run_config(Cell("local:hopper-random", "wide-kan", 1), tmp_path / "architectures.yaml")
    assert inline.arch_file == str(tmp_path / "architectures.yaml")
    builtin = spec.run_config(Cell("local:hopper-random", "mlp-small", 1), tmp_path / "architectures.yaml")
    assert builtin.arch_file is None
    assert (builtin.steps, builtin.epoch_steps, builtin.eval_every, builtin.eval_episodes) == (40, 10, 20, 2)
    assert builtin.device == "cpu" and builtin.cql.cql_alpha == 5.0
    builtin.validate()

    resolved = spec.resolved()
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved
    assert resolved["architectures"]["mlp-small"]["actor"] == "mlp[64,64]"
    assert resolved["architectures"]["wide-kan"]["kan"]["grid_range"] == [-2.0, 2.0]
    assert resolved["settings"]["steps"] == 40 and resolved["settings"]["cql"]["cql_alpha"] == 5.0
    assert "checkpoint_every" not in resolved["settings"] and "seed" not in resolved["settings"]
    assert resolved["datasets"] == ["local:hopper-random", "d4rl:walker2d-medium-v2"]
    assert resolved["seeds"] == [3, 1]


def test_the_baseline_is_one_of_the_architectures_and_reaches_the_resolved_grid(tmp_path: Path) -> None:
    spec = load_grid(write(tmp_path, GOOD.replace("architectures:", "baseline: wide-kan\narchitectures:", 1)))
    assert spec.baseline == "wide-kan" and spec.resolved()["baseline"] == "wide-kan"
    spec = load_grid(write(tmp_path, GOOD))
    assert spec.baseline is None and "baseline" not in spec.resolved()


def test_named_reports_keep_their_order_and_baselines_and_reach_the_resolved_grid(tmp_path: Path) -> None:
    reports = (
        "baseline: mlp-small\nreports:\n  main: {architectures: [mlp-small, kan-small]}\n"
        "  kans: {architectures: [kan-small, wide-kan], baseline: kan-small}\narchitectures:"
    )
    spec = load_grid(write(tmp_path, GOOD.replace("architectures:", reports, 1)))
    assert list(spec.reports) == ["main", "kans"]
    assert spec.reports["main"].architectures == ("mlp-small", "kan-small") and spec.reports["main"].baseline is None
    assert spec.reports["kans"].baseline == "kan-small"
    assert spec.resolved()["reports"] == {
        "main": {"architectures": ["mlp-small", "kan-small"]},
        "kans": {"architectures": ["kan-small", "wide-kan"], "baseline": "kan-small"},
    }
    assert (
        load_grid(write(tmp_path, GOOD)).reports == {} and "reports" not in load_grid(write(tmp_path, GOOD)).resolved()
    )


def test_a_named_report_may_name_some_of_the_grids_datasets(tmp_path: Path) -> None:
    """`datasets:` in a report: those of the grid's datasets, in that order, into the resolved grid; a dataset the
    grid does not train, a repeat or an empty list is refused where it is written."""
    reports = "reports:\n  walker: {architectures: [mlp-small, kan-small], datasets: [%s]}\narchitectures:"
    spec = load_grid(write(tmp_path, GOOD.replace("architectures:", reports % "d4rl:walker2d-medium-v2", 1)))
    assert spec.reports["walker"].datasets == ("d4rl:walker2d-medium-v2",)
    assert spec.resolved()["reports"]["walker"] == {
        "architectures": ["mlp-small", "kan-small"],
        "datasets": ["d4rl:walker2d-medium-v2"],
    }
    spec = load_grid(write(tmp_path, GOOD.replace("architectures:", reports.replace(", datasets: [%s]", ""), 1)))
    assert spec.reports["walker"].datasets == () and "datasets" not in spec.resolved()["reports"]["walker"]
    for value, message in (
        ("d4rl:walker2d-medium", "'d4rl:walker2d-medium' is not one of the grid's datasets; did you mean"),
        ("local:hopper-random, local:hopper-random", "names a dataset twice"),
        ("", "expected a non-empty list of the grid's datasets"),
    ):
        with pytest.raises(BenchError, match=r"reports\.walker\.datasets") as error:
            load_grid(write(tmp_path, GOOD.replace("architectures:", reports % value, 1)))
        assert message in str(error.value)


def test_a_named_report_may_set_other_grids_records_beside_the_grids(tmp_path: Path) -> None:
    """`with:` in a report: other grids of the same results folder, into the resolved grid; the report's
    architectures may then be theirs (checked against their records when the report is built). A report without
    `with` still names the grid's architectures only, and `with` naming this grid, a grid twice or no grid is
    refused where it is written."""
    reports = "reports:\n  beside: {architectures: [mlp-small, mlp-big], with: [%s]}\narchitectures:"
    spec = load_grid(write(tmp_path, GOOD.replace("architectures:", reports % "tiny-big", 1)))
    assert spec.reports["beside"].with_grids == ("tiny-big",)
    assert spec.resolved()["reports"]["beside"] == {"architectures": ["mlp-small", "mlp-big"], "with": ["tiny-big"]}
    with pytest.raises(BenchError, match=r"reports\.beside\.architectures\[1\]"):
        load_grid(write(tmp_path, GOOD.replace("architectures:", reports.replace(", with: [%s]", ""), 1)))
    for value, key, message in (
        ("tiny", r"reports\.beside\.with\[0\]", "names this grid ('tiny'); name other grids only"),
        ("tiny-big, tiny-big", r"reports\.beside\.with", "names a grid twice"),
        ("", r"reports\.beside\.with", "expected a non-empty list of other grids' names"),
        ("../tiny-big", r"reports\.beside\.with\[0\]", "is not a grid name"),
    ):
        with pytest.raises(BenchError, match=key) as error:
            load_grid(write(tmp_path, GOOD.replace("architectures:", reports % value, 1)))
        assert message in str(error.value)


def test_defaults_and_name_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "architectures: [mlp]\ndatasets: [d4rl:hopper-medium-v2]\nseeds: [0]\nsteps: 2000\n")
    spec = load_grid(path)
    assert spec.name == "grid"
    assert (spec.epoch_steps, spec.eval_every, spec.eval_episodes, spec.device) == (1000, 5000, 10, "auto")
    assert spec.resources.num_cpus == 1.0 and spec.resources.num_gpus == 0.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d4rl:hopper-medium-v2", "d4rl-hopper-medium-v2"),
        ("local:hopper-random", "local-hopper-random"),
        ("local:/tmp/data/hopper tiny.hdf5", "local-tmp-data-hopper-tiny.hdf5"),
        ("minari:mujoco/hopper/medium-v0", "minari-mujoco-hopper-medium-v0"),
    ],
)
def test_dataset_slug(name: str, expected: str) -> None:
    assert dataset_slug(name) == expected


TAIL = "datasets: [local:a]\nseeds: [0]\nsteps: 4\n"
HEAD = "architectures: [mlp-small]\ndatasets: [local:hopper-random]\nseeds: [0]\n"


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (HEAD + "steps: 4\nstepz: 5\n", 5, "stepz", "did you mean 'steps'"),
        (
            "architectures:\n  - mlp-small\n  - mlp-smal\ndatasets: [local:hopper-random]\nseeds: [0]\nsteps: 4\n",
            3,
            "architectures[1]",
            "unknown architecture 'mlp-smal'",
        ),
        ("architectures: [mlp-small]\ndatasets: [local:hopper-random]\nseeds: []\nsteps: 4\n", 3, "seeds", "empty"),
        ("architectures: []\ndatasets: [local:hopper-random]\nseeds: [0]\nsteps: 4\n", 1, "architectures", "empty"),
        (HEAD + "steps: many\n", 4, "steps", "positive integer"),
        (HEAD + "steps: 4\neval_episodes: 2.5\n", 5, "eval_episodes", "positive integer"),
        (HEAD + "steps: 4\ndevice: tpu\n", 5, "device", "auto, cpu"),
        (HEAD + "steps: 4\nnormalize_reward: yes please\n", 5, "normalize_reward", "true or false"),
        (
            "architectures: mlp-small\ndatasets: [local:hopper-random]\nseeds: [0]\nsteps: 4\n",
            1,
            "architectures",
            "list",
        ),
        ("architectures: [mlp-small]\ndatasets: [hopper-random]\nseeds: [0]\nsteps: 4\n", 2, "datasets[0]", "prefix"),
        (
            "architectures: [mlp-small]\ndatasets:\n  - d4rl:hopper-medum-v2\nseeds: [0]\nsteps: 4\n",
            3,
            "datasets[0]",
            "hopper-medium-v2",
        ),
        ("architectures: [mlp-small]\ndatasets: [local:a, local:a]\nseeds: [0]\nsteps: 4\n", 2, "datasets[1]", "twice"),
        ("architectures: [mlp-small]\ndatasets: [local:a]\nseeds: [0, -1]\nsteps: 4\n", 3, "seeds[1]", "non-negative"),
        (HEAD + "steps: 5\nepoch_steps: 2\n", 4, "steps", "multiple of epoch_steps"),
        (HEAD + "steps: 4\nepoch_steps: 2\neval_every: 3\n", 6, "eval_every", "multiple of epoch_steps"),
        (HEAD + "steps: 4\ncql:\n  batch_size: 16\n  cql_alhpa: 5\n", 7, "cql.cql_alhpa", "did you mean 'cql_alpha'"),
        (HEAD + "steps: 4\ncql: {batch_size: big}\n", 5, "cql.batch_size", "int"),
        (HEAD + "steps: 4\ncql: {cql_lagrange: 1}\n", 5, "cql.cql_lagrange", "bool"),
        (HEAD + "steps: 4\nresources: {num_gpu: 1}\n", 5, "resources.num_gpu", "num_gpus"),
        (HEAD + "steps: 4\nresources: {num_cpus: 0}\n", 5, "resources.num_cpus", "> 0"),
        (HEAD + "steps: 4\nsteps: 8\n", 5, "steps", "twice"),
        (HEAD + "steps: 4\nname: my grid\n", 5, "name", "folder name"),
        (
            HEAD + "steps: 4\nbaseline: mlp\n",
            5,
            "baseline",
            "str 'mlp' is not one of the grid's architectures (mlp-small)",
        ),
        (HEAD + "steps: 4\nbaseline: [mlp-small]\n", 5, "baseline", "not one of the grid's architectures"),
        (HEAD + "steps: 4\nreports: [mlp-small]\n", 5, "reports", "expected a mapping"),
        (
            HEAD + "steps: 4\nreports:\n  main: {architectures: [mlp-smal]}\n",
            6,
            "reports.main.architectures[0]",
            "did you mean 'mlp-small'",
        ),
        (HEAD + "steps: 4\nreports:\n  main: {architectures: []}\n", 6, "reports.main.architectures", "non-empty"),
        (
            HEAD + "steps: 4\nreports:\n  main: {architectures: [mlp-small], baselne: x}\n",
            6,
            "reports.main.baselne",
            "did you mean 'baseline'",
        ),
        (
            HEAD + "steps: 4\nreports:\n  main: {architectures: [mlp-small], baseline: mlp}\n",
            6,
            "reports.main.baseline",
            "not one of this report's architectures",
        ),
        (
            HEAD + "steps: 4\nreports:\n  my report: {architectures: [mlp-small]}\n",
            6,
            "reports.my report",
            "folder name",
        ),
        (
            "architectures: [mlp-small, kan-small]\ndatasets: [local:a]\nseeds: [0]\nsteps: 4\nbaseline: mlp-small\n"
            "reports:\n  kans: {architectures: [kan-small]}\n",
            7,
            "reports.kans",
            "the grid's baseline 'mlp-small' is not among this report's architectures",
        ),
        (
            "architectures:\n  - mine:\n      actor: kan[x]\n      critic: mlp[4]\n" + TAIL,
            2,
            "architectures[0].mine",
            "kan[x]",
        ),
        (
            "architectures:\n  - mine: {actor: 'kan[4]', critc: 'mlp[4]'}\ndatasets: [local:a]\nseeds: [0]\nsteps: 4\n",
            2,
            "architectures[0].mine",
            "critc",
        ),
        (
            "architectures:\n  - mlp: {actor: 'kan[4]', critic: 'mlp[4]'}\ndatasets: [local:a]\nseeds: [0]\nsteps: 4\n",
            2,
            "architectures[0].mlp",
            "built-in",
        ),
        ("architectures: [mlp-small]\ndatasets: [local:a]\nseeds: [0]\n", 1, "(top level)", "missing key 'steps'"),
        (
            HEAD + "steps: 4\ndataset_overrides:\n  local:hopper-randm: {normalize_reward: true}\n",
            6,
            "dataset_overrides.local:hopper-randm",
            "did you mean 'local:hopper-random'",
        ),
        (
            HEAD + "steps: 4\narchitecture_overrides:\n  mlp-smal: {policy_lr: 1e-4}\n",
            6,
            "architecture_overrides.mlp-smal",
            "did you mean 'mlp-small'",
        ),
        (
            HEAD + "steps: 4\narchitecture_overrides:\n  mlp-small:\n    polcy_lr: 1e-4\n",
            7,
            "architecture_overrides.mlp-small.polcy_lr",
            "did you mean 'policy_lr'",
        ),
        (
            HEAD + "steps: 4\ndataset_overrides:\n  local:hopper-random: {normalize_reward: 1}\n",
            6,
            "dataset_overrides.local:hopper-random.normalize_reward",
            "true or false",
        ),
        (
            HEAD + "steps: 4\narchitecture_overrides: {mlp-small: {batch_size: big}}\n",
            5,
            "architecture_overrides.mlp-small.batch_size",
            "int",
        ),
        (
            HEAD + "steps: 4\narchitecture_overrides: {mlp-small: {}}\n",
            5,
            "architecture_overrides.mlp-small",
            "mapping",
        ),
        (HEAD + "steps: 4\ndataset_overrides: [local:hopper-random]\n", 5, "dataset_overrides", "mapping"),
        # CORL writes "no clipping" as inf; a record (JSON) cannot hold it, so the run would fail at its end.
        (HEAD + "steps: 4\ncql: {cql_clip_diff_max: .inf}\n", 5, "cql.cql_clip_diff_max", "not a finite number"),
        (
            HEAD + "steps: 4\narchitecture_overrides: {mlp-small: {policy_lr: .nan}}\n",
            5,
            "architecture_overrides.mlp-small.policy_lr",
            "default (null)",
        ),
        (
            HEAD + "steps: 4\narchitecture_overrides:\n  mlp-small: {soft_target_update_rate: 2.0}\n",
            6,
            "architecture_overrides.mlp-small",
            "soft_target_update_rate",
        ),
        (
            HEAD
            + "steps: 4\ndataset_overrides:\n  local:hopper-random: {policy_lr: 1e-4}\n"
            + "architecture_overrides:\n  mlp-small: {policy_lr: 3e-4}\n",
            8,
            "architecture_overrides.mlp-small.policy_lr",
            "dataset_overrides also sets policy_lr for local:hopper-random (line 6)",
        ),
    ],
)
def test_bad_grid_is_refused_with_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(BenchError) as info:
        load_grid(path)
    error = str(info.value)
    assert f"grid file {path}" in error
    assert f"line {line}," in error
    assert f"key '{key}'" in error
    assert message in error


OVERRIDES = """\
dataset_overrides:
  d4rl:walker2d-medium-v2: {normalize_reward: true, cql_alpha: 2}
architecture_overrides:
  wide-kan:
    policy_lr: 3e-4   # YAML reads 3e-4 as a string; the setting is a float
"""


def test_dataset_and_architecture_overrides_reach_exactly_their_cells(tmp_path: Path) -> None:
    spec = load_grid(write(tmp_path, GOOD + OVERRIDES))
    assert spec.dataset_overrides == {"d4rl:walker2d-medium-v2": {"normalize_reward": True, "cql_alpha": 2.0}}
    assert spec.architecture_overrides == {"wide-kan": {"policy_lr": 3e-4}}
    for cell in spec.cells():
        config = spec.run_config(cell)
        walker, wide = cell.dataset == "d4rl:walker2d-medium-v2", cell.arch == "wide-kan"
        assert config.normalize_reward is walker
        assert config.cql.cql_alpha == (2.0 if walker else 5.0)
        assert config.cql.policy_lr == (3e-4 if wide else 1e-4)
        assert config.cql.batch_size == 256

    record = spec.record_overrides(Cell("d4rl:walker2d-medium-v2", "wide-kan", 1))
    assert record["applied"] == {"normalize_reward": True, "cql.cql_alpha": 2.0, "cql.policy_lr": 3e-4}
    assert record["replaced"] == {"normalize_reward": False, "cql.cql_alpha": 5.0, "cql.policy_lr": 1e-4}
    untouched = spec.record_overrides(Cell("local:hopper-random", "mlp-small", 3))
    assert untouched["applied"] == untouched["replaced"] == {}
    assert untouched["dataset_overrides"] == spec.dataset_overrides

    resolved = spec.resolved()
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved
    assert resolved["settings"]["normalize_reward"] is False and resolved["settings"]["cql"]["policy_lr"] == 1e-4
    assert resolved["dataset_overrides"] == {"d4rl:walker2d-medium-v2": {"normalize_reward": True, "cql_alpha": 2.0}}
    assert resolved["architecture_overrides"] == {"wide-kan": {"policy_lr": 3e-4}}


def test_a_dataset_and_an_architecture_may_override_different_settings(tmp_path: Path) -> None:
    text = GOOD + "dataset_overrides:\n  local:hopper-random: {normalize_reward: true}\n"
    text += "architecture_overrides:\n  kan-small: {policy_lr: 3e-4}\n"
    config = load_grid(write(tmp_path, text)).run_config(Cell("local:hopper-random", "kan-small", 1))
    assert config.normalize_reward and config.cql.policy_lr == 3e-4


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "architectures: [mlp-small\nseeds: [0]\n", "broken.yaml")
    with pytest.raises(BenchError, match=rf"grid file {re.escape(str(path))}, line \d+: not valid YAML"):
        load_grid(path)
    with pytest.raises(BenchError, match="cannot read grid file"):
        load_grid(tmp_path / "nope.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("description: café\n".encode("latin-1"))
    with pytest.raises(BenchError, match=rf"grid file {re.escape(str(latin1))} is not UTF-8 text .*save it as UTF-8"):
        load_grid(latin1)


def test_paper_grid() -> None:
    spec = load_grid(CONFIGS / "paper.yaml")
    assert spec.name == "paper"
    assert list(spec.architectures) == ["corl-mlp", "mlp", "kan1-mlp", "kan2-mlp", "kan-kan"]
    assert {name.removeprefix("d4rl:") for name in spec.datasets} == set(D4RL_DATASETS)
    assert spec.seeds == (0, 1, 2, 3, 4)
    assert (spec.steps, spec.epoch_steps, spec.eval_every, spec.eval_episodes) == (1_000_000, 1_000, 5_000, 10)
    assert spec.cql == type(spec.cql)()  # CORL's settings, untouched
    assert len(spec.cells()) == 5 * 9 * 5
    # CORL's per-dataset configs differ from its defaults in one place: hopper/medium_v2.yaml normalizes rewards.
    assert spec.dataset_overrides == {"d4rl:hopper-medium-v2": {"normalize_reward": True}}
    assert spec.architecture_overrides == {}
    normalized = {cell.dataset for cell in spec.cells() if spec.run_config(cell).normalize_reward}
    assert normalized == {"d4rl:hopper-medium-v2"}


def test_paper_grid_comment_has_the_walker2d_parameter_counts() -> None:
    text = (CONFIGS / "paper.yaml").read_text()
    walker = get_env_spec("walker2d")
    for name in ("corl-mlp", "mlp", "kan1-mlp", "kan2-mlp", "kan-kan"):
        arch = get_architecture(name)
        actor = count_parameters(build_network(arch.actor, walker.obs_dim, 2 * walker.act_dim, arch.kan))
        critic = count_parameters(build_network(arch.critic, walker.obs_dim + walker.act_dim, 1, arch.kan))
        row = next(line for line in text.splitlines() if line.startswith(f"#   {name} "))
        numbers = [int(n.replace(",", "")) for n in re.findall(r"(?<=\s)\d{1,3}(?:,\d{3})*(?=\s|$)", row)]
        assert numbers == [actor, critic], row


def test_smoke_grid() -> None:
    spec = load_grid(CONFIGS / "smoke.yaml")
    assert spec.name == "smoke"
    assert list(spec.architectures) == ["mlp-small", "kan-small"]
    assert spec.datasets == ("local:hopper-random",)
    assert len(spec.cells()) == 4 and spec.device == "cpu"


def test_local_grid_is_the_paper_grid_on_the_local_datasets() -> None:
    paper, local = load_grid(CONFIGS / "paper.yaml"), load_grid(CONFIGS / "local.yaml")
    assert local.name == "local"
    assert local.datasets == tuple(name.replace("d4rl:", "local:").removesuffix("-v2") for name in paper.datasets)
    assert local.resolved()["settings"] == paper.resolved()["settings"]
    assert list(local.architectures) == list(paper.architectures)
    renamed = {name.replace("d4rl:", "local:").removesuffix("-v2"): v for name, v in paper.dataset_overrides.items()}
    assert local.dataset_overrides == renamed and local.architecture_overrides == paper.architecture_overrides


def test_demo_grid() -> None:
    spec = load_grid(CONFIGS / "demo.yaml")
    assert spec.name == "demo" and list(spec.architectures) == ["mlp-small", "kan-small"]
    assert spec.datasets == ("local:halfcheetah-medium", "local:hopper-medium", "local:walker2d-medium")
    assert len(spec.cells()) == 2 * 3 * 3 and spec.device == "cpu" and spec.resources.num_gpus == 0
