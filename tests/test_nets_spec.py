"""Network spec strings, architecture files, built-in architectures and `nets describe`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.nets.describe import describe_architecture
from bench.nets.kan import KAN, KANOptions
from bench.nets.mlp import MLP
from bench.nets.spec import (
    NetworkSpec,
    build_network,
    count_parameters,
    get_architecture,
    load_architectures,
    parse_network_spec,
)

if TYPE_CHECKING:
    from bench.grid.spec import GridSpec


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("mlp[256,256,256]", NetworkSpec("mlp", (256, 256, 256))),
        ("kan[4]", NetworkSpec("kan", (4,))),
        ("kan[4,4]", NetworkSpec("kan", (4, 4))),
        ("mlp[]", NetworkSpec("mlp", ())),
        ("kan[]", NetworkSpec("kan", ())),
    ],
)
def test_spec_round_trip(text: str, spec: NetworkSpec) -> None:
    assert parse_network_spec(text) == spec
    assert str(spec) == text


def test_spec_tolerates_spaces() -> None:
    assert parse_network_spec(" kan[ 8 , 8 ] ") == NetworkSpec("kan", (8, 8))


@pytest.mark.parametrize("text", ["mlp", "mlp[0]", "kan[4,]", "kan[-1]", "mlp[a]", "", "MLP[4]", "kan[4]]"])
def test_bad_spec_strings(text: str) -> None:
    with pytest.raises(BenchError, match="expected kind") as info:
        parse_network_spec(text)
    assert repr(text) in str(info.value)


def test_an_unregistered_kind_names_the_registered_ones() -> None:
    with pytest.raises(BenchError, match=r"'cnn\[4\]': network kind 'cnn': use one of .*kan, mlp") as info:
        parse_network_spec("cnn[4]")
    assert "BENCH_LAYER_PLUGINS" in str(info.value)


def test_build_network_builds_the_whole_network() -> None:
    kan = build_network(parse_network_spec("kan[4]"), 17, 12, KANOptions())
    assert isinstance(kan, KAN)
    assert [(layer.in_features, layer.out_features) for layer in kan.layers] == [(17, 4), (4, 12)]
    mlp = build_network(parse_network_spec("mlp[256,256,256]"), 23, 1, KANOptions())
    assert isinstance(mlp, MLP)
    assert [(layer.in_features, layer.out_features) for layer in mlp.layers] == [
        (23, 256),
        (256, 256),
        (256, 256),
        (256, 1),
    ]
    assert count_parameters(mlp) == 137_985
    single = build_network(parse_network_spec("mlp[]"), 5, 3, KANOptions(), ensemble_size=2)
    assert single(torch.randn(2, 7, 5)).shape == (2, 7, 3)
    assert count_parameters(build_network(parse_network_spec("kan[]"), 5, 3, KANOptions())) == 150


# Walker2d (obs 17, act 6) actor network and per-critic counts, as in architectures.yaml.
BUILTIN_COUNTS = {
    "corl-mlp": (139_276, 137_985),
    "mlp": (7_692, 137_985),
    "kan1-mlp": (1_160, 137_985),
    "kan2-mlp": (1_320, 137_985),
    "kan-kan": (1_160, 2_560),
    "mlp-matched": (1_152, 137_985),
    "mlp-small": (6_092, 5_761),
    "kan-small": (1_160, 5_761),
}


def test_builtin_architectures_and_their_counts() -> None:
    archs = load_architectures()
    assert set(archs) == set(BUILTIN_COUNTS)
    for name, (actor_count, critic_count) in BUILTIN_COUNTS.items():
        arch = archs[name]
        assert arch.name == name and arch.description
        assert count_parameters(build_network(arch.actor, 17, 12, arch.kan)) == actor_count
        assert count_parameters(build_network(arch.critic, 23, 1, arch.kan)) == critic_count
    assert archs["mlp"].actor == NetworkSpec("mlp", (256,))
    assert archs["kan1-mlp"].kan == KANOptions()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_architecture_file_adds_architectures(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "my-kan:\n  actor: kan[6]\n  critic: mlp[64]\n  kan:\n    grid_size: 8\n    spline_order: 2\n"
        "    grid_range: [-2, 2]\n    input_norm: tanh\n    base_activation: false\n",
    )
    arch = get_architecture("my-kan", arch_file=path)
    assert arch.kan == KANOptions(8, 2, (-2.0, 2.0), "tanh", False)
    assert arch.actor == NetworkSpec("kan", (6,)) and arch.description == ""
    assert get_architecture("mlp", arch_file=path).actor == NetworkSpec("mlp", (256,))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x:\n  actor: kan[4]\n  critic: mlp[8]\n  widht: 3\n", "architecture 'x': unknown key 'widht'"),
        (
            "x:\n  actor: kan[4]\n  critic: mlp[8]\n  kan: {grid: 3}\n",
            "architecture 'x': unknown key 'kan.grid'",
        ),
        ("x:\n  actor: kan[4]\n", "missing key 'critic'"),
        ("x:\n  actor: kan[4\n  critic: mlp[8]\n", "network spec 'kan[4'"),
        ("x:\n  actor: kan[4]\n  critic: mlp[8]\n  kan: {input_norm: batch}\n", "input_norm 'batch'"),
        ("- a\n- b\n", "expected a mapping"),
        ("mlp:\n  actor: mlp[4]\n  critic: mlp[4]\n", "redefines the built-in architecture 'mlp'"),
    ],
)
def test_bad_architecture_files(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BenchError) as info:
        get_architecture("x", arch_file=path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_architecture_names_the_closest() -> None:
    with pytest.raises(BenchError, match="unknown architecture 'kan-kn': did you mean kan-kan"):
        get_architecture("kan-kn")
    with pytest.raises(BenchError, match="cannot read architecture file"):
        get_architecture("mlp", arch_file=Path("/nonexistent/archs.yaml"))


def test_describe_shows_layers_and_paper_counts() -> None:
    text = describe_architecture("mlp")
    assert "7,692" in text and "137,985" in text and "275,970" in text
    assert "17 -> 256" in text and "256 -> 12" in text
    kan = describe_architecture("kan1-mlp", env="hopper")
    assert "KANLinear" in kan and "11 -> 4" in kan and "G=5 k=3" in kan
    assert f"{(11 * 4 + 4 * 6) * 10:,}" in kan


def test_cli_describe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nets", "describe", "kan1-mlp"]) == 0
    assert "1,160" in capsys.readouterr().out
    assert main(["nets", "describe", "nope"]) == 2
    assert "unknown architecture 'nope'" in capsys.readouterr().err


def test_the_matched_mlp_actor_has_the_small_kan_actors_parameters() -> None:
    from bench.nets.heads import TanhGaussianActor

    counts = {}
    for name in ("mlp-matched", "kan1-mlp"):
        arch = get_architecture(name)
        counts[name] = count_parameters(TanhGaussianActor(17, 6, arch.actor, arch.kan).network)  # Walker2d
    assert counts == {"mlp-matched": 1152, "kan1-mlp": 1160}
    assert abs(counts["mlp-matched"] / counts["kan1-mlp"] - 1) < 0.05


def test_the_study_sweep_grid_sets_each_actors_learning_rate() -> None:
    from bench.grid.spec import load_grid

    spec = load_grid(Path(__file__).resolve().parents[1] / "configs" / "cpu-study-lr.yaml")
    rates = {cell.arch: spec.run_config(cell).cql.policy_lr for cell in spec.cells()}
    assert len(rates) == 18 and rates["kan4-lr1e-4"] == 1e-4 and rates["mlp256-lr3e-5"] == 3e-5
    for arch, rate in rates.items():
        assert rate == float(arch.split("-lr")[1]), arch
    assert {spec.architectures[a].critic.hidden for a in rates} == {(64, 64)}
    assert spec.seeds_per_process == 3
    # The width grid's two actors, swept as they train there (its KAN options are the defaults, as here).
    width = load_grid(Path(__file__).resolve().parents[1] / "configs" / "cpu-study-width.yaml")
    for name in ("mlp4", "kan38"):
        for rate in ("3e-5", "1e-4", "3e-4"):
            swept = spec.architectures[f"{name}-lr{rate}"]
            assert (swept.actor, swept.critic, swept.kan) == (
                width.architectures[name].actor,
                width.architectures[name].critic,
                width.architectures[name].kan,
            )


def test_the_algorithms_rate_check_pairs_each_small_actor_of_the_algorithms_grid_at_two_rates() -> None:
    """configs/algorithms-lr.yaml: kan[4] and mlp[38] exactly as configs/algorithms.yaml trains them (networks,
    settings, budget), at CORL's 3e-4 and at 1e-3, under each of its algorithms."""
    from dataclasses import asdict

    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    check = load_grid(root / "configs" / "algorithms-lr.yaml")
    grid = load_grid(root / "configs" / "algorithms.yaml")
    assert check.algorithms == grid.algorithms == ("bc", "td3bc", "iql")
    assert check.datasets == ("local:walker2d-medium",) and check.seeds == (0, 1, 2)
    for field in ("steps", "epoch_steps", "eval_every", "eval_episodes", "device", "compile"):
        assert getattr(check, field) == getattr(grid, field), field
    for cell in check.cells():
        base, rate = cell.arch.split("-lr")
        assert check.architectures[cell.arch].actor == grid.architectures[base].actor
        assert check.architectures[cell.arch].critic == grid.architectures[base].critic
        config = check.run_config(cell)
        assert getattr(config, cell.algo).actor_lr == float(rate)
        same = grid.run_config(Cell(cell.dataset, base, cell.seed, cell.algo))
        others = {k: v for k, v in asdict(getattr(config, cell.algo)).items() if k != "actor_lr"}
        assert others == {k: v for k, v in asdict(getattr(same, cell.algo)).items() if k != "actor_lr"}, cell
    assert sorted({c.arch for c in check.cells()}) == sorted(
        f"{base}-lr{rate}" for base in ("kan1-c2", "matched-c2") for rate in ("3e-4", "1e-3")
    )


def test_the_study_grid_takes_the_rates_the_sweep_chose() -> None:
    """configs/cpu-study.yaml against the committed sweep records: each actor at the rate with the best final IQM
    (rliable's), the MLP actor also at CORL's 3e-5."""
    import json

    import numpy as np
    from rliable import metrics

    from bench.grid.spec import load_grid

    root = Path(__file__).resolve().parents[1]
    finals: dict[str, list[float]] = {}
    for path in sorted((root / "results" / "cpu-study-lr").rglob("seed*.json")):
        record = json.loads(path.read_text())
        finals.setdefault(record["cell"]["arch"], []).append(record["final_score"])
    sweep = load_grid(root / "configs" / "cpu-study-lr.yaml")
    assert set(finals) == set(sweep.architectures) and {len(scores) for scores in finals.values()} == {3}
    chosen = {}
    for actor in ("mlp256", "kan4", "kan44", "mlp38"):
        iqm = {
            float(arch.split("-lr")[1]): metrics.aggregate_iqm(np.asarray(scores))
            for arch, scores in finals.items()
            if arch.split("-lr")[0] == actor
        }
        chosen[actor] = max(iqm, key=iqm.__getitem__)

    spec = load_grid(root / "configs" / "cpu-study.yaml")
    main = ("mlp256", "kan4", "mlp38", "kan44", "mlp256-corl")
    assert tuple(spec.architectures) == main and not spec.reports
    rates = {cell.arch: spec.run_config(cell).cql.policy_lr for cell in spec.cells()}
    assert rates == {**chosen, "mlp256-corl": 3e-5}
    assert {spec.architectures[a].critic.hidden for a in rates} == {(64, 64)}
    assert {str(spec.architectures[a].actor) for a in rates} == {"mlp[256]", "kan[4]", "kan[4,4]", "mlp[38]"}
    assert spec.datasets == ("local:walker2d-medium", "local:hopper-medium", "local:halfcheetah-medium")
    assert spec.seeds == (0, 1, 2, 3, 4) and spec.seeds_per_process == 5 and spec.steps == 50_000
    assert spec.eval_every == 5_000 and spec.eval_episodes == 10 and spec.baseline == "mlp256"


def test_the_ablation_grid_changes_one_thing_of_the_studys_kan4_each() -> None:
    """configs/cpu-study-ablations.yaml: kan4 and mlp38 exactly as the study trains them (networks, rate, budget),
    and six ablations that each change one thing of kan4 (its layer type, one KAN option or its critic) and keep
    its rate; `make study-ablations` runs the KAN critics, the costliest cells, last."""
    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    study = load_grid(root / "configs" / "cpu-study.yaml")
    spec = load_grid(root / "configs" / "cpu-study-ablations.yaml")
    assert spec.baseline == "kan4" and spec.datasets == study.datasets
    shared = ("seeds", "seeds_per_process", "steps", "epoch_steps", "eval_every", "eval_episodes", "device", "compile")
    for field in shared:
        assert getattr(spec, field) == getattr(study, field), field
    for name in ("kan4", "mlp38"):
        assert spec.architectures[name].actor == study.architectures[name].actor
        assert spec.architectures[name].critic == study.architectures[name].critic
        assert spec.architectures[name].kan == study.architectures[name].kan
        cell = Cell(spec.datasets[0], name, 0)
        assert spec.run_config(cell).cql == study.run_config(cell).cql, name

    kan4 = spec.architectures["kan4"]
    ablations = [name for name in spec.architectures if name not in ("kan4", "mlp38")]
    assert len(ablations) == 6 and ablations[-1] == "kan4-kan-critic"
    for name in ablations:
        arch = spec.architectures[name]
        changed = [arch.actor.kind != kan4.actor.kind, arch.critic != kan4.critic]
        options = ("grid_size", "grid_range", "base_activation")
        changed += [getattr(arch.kan, option) != getattr(kan4.kan, option) for option in options]
        assert sum(changed) == 1, name
        assert arch.actor.hidden == kan4.actor.hidden, name
        cell = Cell(spec.datasets[0], name, 0)
        assert spec.run_config(cell).cql == spec.run_config(Cell(spec.datasets[0], "kan4", 0)).cql, name
    makefile = (root / "Makefile").read_text()
    first = [name for name in spec.architectures if name != "kan4-kan-critic"]
    assert f"ABLATIONS_FIRST := {','.join(first)}\n" in makefile


def test_the_horizon_grid_trains_the_ablation_grids_kan4_and_mlp38_for_twice_the_steps() -> None:
    """configs/cpu-study-horizon.yaml: the ablation grid's kan4 and mlp38 cells on its three datasets (networks,
    rate, seeds, groups, data, evaluation), changed only in their budget, so its runs at 50,000 steps are that
    grid's runs (`bench report --at-step 50000`) and its later steps are the new information."""
    from bench.grid.spec import load_grid

    root = Path(__file__).resolve().parents[1]
    ablations = load_grid(root / "configs" / "cpu-study-ablations.yaml")
    spec = load_grid(root / "configs" / "cpu-study-horizon.yaml")
    assert spec.steps == 2 * ablations.steps == 100_000 and spec.baseline == "mlp38"
    assert spec.datasets == ablations.datasets and list(spec.architectures) == ["kan4", "mlp38"]
    assert_only_the_budget_differs(spec, ablations)


def assert_only_the_budget_differs(spec: GridSpec, base: GridSpec) -> None:
    """Each of `spec`'s cells is `base`'s cell of that dataset and architecture with `spec`'s budget: the same
    networks, rates, seeds, groups and evaluation, so its runs up to `base.steps` are `base`'s runs."""
    from dataclasses import replace

    from bench.grid.spec import Cell

    shared = ("seeds", "seeds_per_process", "epoch_steps", "eval_every", "eval_episodes", "device", "compile")
    for field in shared:
        assert getattr(spec, field) == getattr(base, field), field
    for name in spec.architectures:
        assert spec.architectures[name] == base.architectures[name], name
        for dataset in spec.datasets:
            cell = Cell(dataset, name, 0)
            assert spec.run_config(cell) == replace(base.run_config(cell), steps=spec.steps), (dataset, name)


def test_the_width_grid_crosses_kan4s_and_mlp38s_layers_with_their_widths() -> None:
    """configs/cpu-study-width.yaml: the ablation grid's kan4 and mlp38 cells unchanged (so their records are
    adopted), an MLP of kan4's width and a KAN of mlp38's width, each with kan4's KAN options, critics and rate."""
    from dataclasses import replace

    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    ablations = load_grid(root / "configs" / "cpu-study-ablations.yaml")
    spec = load_grid(root / "configs" / "cpu-study-width.yaml")
    assert list(spec.architectures) == ["kan4", "mlp4", "kan38", "mlp38", "mlp4-lr3e-4"] and spec.baseline == "kan4"
    assert {name: (report.architectures, report.baseline) for name, report in spec.reports.items()} == {
        "cpu-study-width": (("kan4", "mlp4", "kan38", "mlp38", "mlp4-lr3e-4"), None),
        "cpu-study-width-vs-mlp38": (("mlp38", "kan38", "kan4", "mlp4", "mlp4-lr3e-4"), "mlp38"),
    }
    assert spec.datasets == ablations.datasets
    shared = ("seeds", "seeds_per_process", "steps", "epoch_steps", "eval_every", "eval_episodes", "device", "compile")
    for field in shared:
        assert getattr(spec, field) == getattr(ablations, field), field
    archs = spec.architectures
    for name in ("kan4", "mlp38"):
        assert replace(archs[name], description="") == replace(ablations.architectures[name], description=""), name
    assert (archs["mlp4"].actor.kind, archs["mlp4"].actor.hidden) == ("mlp", archs["kan4"].actor.hidden)
    assert (archs["kan38"].actor.kind, archs["kan38"].actor.hidden) == ("kan", archs["mlp38"].actor.hidden)
    for name in ("mlp4", "kan38", "mlp4-lr3e-4"):
        assert archs[name].critic == archs["kan4"].critic and archs[name].kan == archs["kan4"].kan, name
    assert replace(archs["mlp4-lr3e-4"], name="mlp4", description="") == replace(archs["mlp4"], description="")
    for dataset in spec.datasets:
        for name in archs:
            cell = Cell(dataset, name, 0)
            rate = 3e-4 if name == "mlp4-lr3e-4" else 1e-4
            kan4 = ablations.run_config(Cell(dataset, "kan4", 0)).cql
            assert spec.run_config(cell).cql == replace(kan4, policy_lr=rate), (dataset, name)
        for name in ("kan4", "mlp38"):
            assert spec.run_config(Cell(dataset, name, 0)) == ablations.run_config(Cell(dataset, name, 0)), name
    assert (
        "$(PY) -m bench grid adopt configs/cpu-study-width.yaml --from $(RESULTS)/cpu-study-ablations"
        in (root / "Makefile").read_text()
    )


def test_the_quality_grid_trains_the_studys_actors_as_they_were_on_the_other_datasets() -> None:
    """configs/cpu-study-quality.yaml: the study's mlp256, kan4 and mlp38 and the width grid's kan38, each with its
    grid's networks, rate, seeds, groups, budget and evaluation, on the nine local datasets, so its medium cells
    are those grids' records (adopted) and the other datasets differ from them in the data alone."""
    from dataclasses import replace

    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    study = load_grid(root / "configs" / "cpu-study.yaml")
    width = load_grid(root / "configs" / "cpu-study-width.yaml")
    spec = load_grid(root / "configs" / "cpu-study-quality.yaml")
    assert list(spec.architectures) == ["mlp256", "kan4", "mlp38", "kan38"] and spec.baseline == "mlp256"
    envs = ("walker2d", "hopper", "halfcheetah")
    qualities = ("medium", "medium-replay", "medium-expert")
    assert spec.datasets == tuple(f"local:{env}-{quality}" for quality in qualities for env in envs)
    actors = ("mlp256", "kan4", "mlp38", "kan38")
    reports = {name: (r.architectures, r.baseline, r.datasets) for name, r in spec.reports.items()}
    assert reports == {
        "cpu-study-quality": (actors, None, ()),
        "cpu-study-quality-vs-mlp38": (("mlp38", "kan38", "kan4", "mlp256"), "mlp38", ()),
        **{
            f"cpu-study-quality-{quality}": (actors, None, tuple(f"local:{env}-{quality}" for env in envs))
            for quality in qualities
        },
    }
    shared = ("seeds", "seeds_per_process", "steps", "epoch_steps", "eval_every", "eval_episodes", "device", "compile")
    for field in shared:
        assert getattr(spec, field) == getattr(study, field) == getattr(width, field), field
    origin = {"mlp256": study, "kan4": study, "mlp38": study, "kan38": width}
    for name, grid in origin.items():
        theirs = grid.architectures[name]
        assert replace(spec.architectures[name], description="") == replace(theirs, description=""), name
        medium = grid.run_config(Cell(f"local:{envs[0]}-medium", name, 0))
        for dataset in spec.datasets:
            ours = spec.run_config(Cell(dataset, name, 0))
            assert ours == replace(medium, dataset=ours.dataset), (dataset, name)
    makefile = (root / "Makefile").read_text()
    for source in ("cpu-study-width", "cpu-study"):  # the medium cells trained there on the same data
        assert f"$(PY) -m bench grid adopt configs/cpu-study-quality.yaml --from $(RESULTS)/{source} " in makefile


def test_the_medium_expert_horizon_grid_trains_the_quality_grids_cells_for_twice_the_steps() -> None:
    """configs/cpu-study-horizon-medium-expert.yaml: the quality grid's mlp256 and kan38 cells on its three
    medium-expert datasets (networks, rate, seeds, groups, data, evaluation), changed only in their budget, so its
    runs at 50,000 steps are that grid's cells (`bench report --at-step 50000`) and its later steps are new."""
    from bench.grid.spec import load_grid

    root = Path(__file__).resolve().parents[1]
    quality = load_grid(root / "configs" / "cpu-study-quality.yaml")
    spec = load_grid(root / "configs" / "cpu-study-horizon-medium-expert.yaml")
    assert spec.steps == 2 * quality.steps == 100_000 and spec.baseline == quality.baseline == "mlp256"
    assert list(spec.architectures) == ["mlp256", "kan38"]
    assert spec.datasets == tuple(f"local:{env}-medium-expert" for env in ("hopper", "walker2d", "halfcheetah"))
    assert set(spec.datasets) <= set(quality.datasets)
    assert_only_the_budget_differs(spec, quality)
    assert "$(GRID_RUN) configs/cpu-study-horizon-medium-expert.yaml" in (root / "Makefile").read_text()


def test_the_medium_expert_algorithms_grid_trains_the_algorithms_grids_cells_on_medium_expert_data() -> None:
    """configs/algorithms-medium-expert.yaml: configs/algorithms.yaml's cells (actors, critics, algorithms, budget,
    seeds, groups, evaluation) on the three local medium-expert datasets instead of the medium ones, with IQL's
    per-dataset settings from CORL's medium_expert_v2.yaml files (hopper: beta 6.0, iql_tau 0.5; the others CORL's
    defaults)."""
    from dataclasses import asdict

    from bench.agents.iql import IQLConfig
    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    medium = load_grid(root / "configs" / "algorithms.yaml")
    spec = load_grid(root / "configs" / "algorithms-medium-expert.yaml")
    assert spec.datasets == tuple(d.replace("-medium", "-medium-expert") for d in medium.datasets)
    assert spec.algorithms == medium.algorithms and spec.seeds == medium.seeds and spec.baseline == medium.baseline
    assert spec.settings() == medium.settings() and spec.seeds_per_process == medium.seeds_per_process
    assert spec.architectures == medium.architectures and spec.architecture_overrides == medium.architecture_overrides
    for cell in spec.cells():
        config = getattr(spec.run_config(cell), cell.algo)
        plain = getattr(medium.run_config(Cell("local:walker2d-medium", cell.arch, cell.seed, cell.algo)), cell.algo)
        if cell.algo == "iql" and cell.dataset == "local:hopper-medium-expert":
            assert asdict(config) == asdict(IQLConfig(beta=6.0, iql_tau=0.5)), cell
        else:
            assert config == plain, cell
    assert "$(GRID_RUN) configs/algorithms-medium-expert.yaml" in (root / "Makefile").read_text()


def test_the_td3bc_alpha_grid_is_the_algorithms_grids_td3bc_mlp256_cell_at_other_alphas() -> None:
    """configs/td3bc-alpha-medium-expert.yaml: the algorithms grid's TD3+BC mlp[256] cell on local
    halfcheetah-medium-expert (actor, critics, settings, budget, seeds, groups) at alpha 2.5 under the same name, so
    that its records are adopted, and at 1.0 and 0.25, every other TD3+BC setting CORL's."""
    from dataclasses import replace

    from bench.agents.td3_bc import TD3BCConfig
    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    source = load_grid(root / "configs" / "algorithms-medium-expert.yaml")
    spec = load_grid(root / "configs" / "td3bc-alpha-medium-expert.yaml")
    assert spec.algorithms == ("td3bc",) and spec.datasets == ("local:halfcheetah-medium-expert",)
    other_algorithms = {"algorithms", "bc", "iql"}
    assert {k: v for k, v in spec.settings().items() if k not in other_algorithms} == {
        k: v for k, v in source.settings().items() if k not in other_algorithms
    }
    assert spec.seeds == source.seeds
    assert spec.seeds_per_process == source.seeds_per_process
    alphas = {"mlp-c2": 2.5, "mlp-c2-alpha1": 1.0, "mlp-c2-alpha0.25": 0.25}
    assert set(spec.architectures) == set(alphas)
    for cell in spec.cells():
        arch, mlp256 = spec.architectures[cell.arch], source.architectures["mlp-c2"]
        assert (arch.actor, arch.critic, arch.kan) == (mlp256.actor, mlp256.critic, mlp256.kan)
        assert spec.run_config(cell).td3bc == replace(TD3BCConfig(), alpha=alphas[cell.arch]), cell
    plain = Cell("local:halfcheetah-medium-expert", "mlp-c2", 0, "td3bc")
    assert spec.run_config(plain) == source.run_config(plain)
    makefile = (root / "Makefile").read_text()
    assert "$(GRID_RUN) configs/td3bc-alpha-medium-expert.yaml" in makefile


def test_the_cql_alpha_grid_is_the_quality_grids_mlp256_cell_at_other_cql_alphas() -> None:
    """configs/cql-alpha-medium-expert.yaml: the quality grid's mlp256 cell on local halfcheetah-medium-expert
    (actor, critics, settings, budget, seeds, groups, compiled step) at cql_alpha 10 under the same name, so that its
    records repeat that grid's, and at 1 and 50, every other CQL setting CORL's; its groups keep their final
    states, for Table 10."""
    from dataclasses import replace

    from bench.agents.cql import CQLConfig
    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    source = load_grid(root / "configs" / "cpu-study-quality.yaml")
    spec = load_grid(root / "configs" / "cql-alpha-medium-expert.yaml")
    assert spec.algorithms == ("cql",) and spec.datasets == ("local:halfcheetah-medium-expert",)
    assert spec.settings() == source.settings()
    assert spec.seeds == source.seeds
    assert spec.seeds_per_process == source.seeds_per_process
    cql_alphas = {"mlp256": 10.0, "mlp256-cqlalpha1": 1.0, "mlp256-cqlalpha50": 50.0}
    assert set(spec.architectures) == set(cql_alphas)
    plain = Cell("local:halfcheetah-medium-expert", "mlp256", 0, "cql")
    for cell in spec.cells():
        arch, mlp256 = spec.architectures[cell.arch], source.architectures["mlp256"]
        assert (arch.actor, arch.critic, arch.kan) == (mlp256.actor, mlp256.critic, mlp256.kan)
        expected = replace(source.run_config(plain).cql, cql_alpha=cql_alphas[cell.arch])
        assert spec.run_config(cell).cql == expected, cell
        assert replace(expected, policy_lr=CQLConfig().policy_lr, cql_alpha=CQLConfig().cql_alpha) == CQLConfig()
    assert spec.run_config(plain) == source.run_config(plain)
    assert spec.keep_final_state and not source.keep_final_state
    assert "$(GRID_RUN) configs/cql-alpha-medium-expert.yaml" in (root / "Makefile").read_text()


def test_the_cql_alpha50_actors_grid_is_the_quality_grids_small_actors_at_the_cql_alpha_grids_largest() -> None:
    """configs/cql-alpha50-actors-medium-expert.yaml: the quality grid's kan4, mlp38 and kan38 cells on local
    halfcheetah-medium-expert (actors, critics, settings, budget, seeds, groups, compiled step) at the CQL alpha
    grid's cql_alpha 50, every other CQL setting the quality grid's; its groups keep their final states."""
    from dataclasses import replace

    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    source = load_grid(root / "configs" / "cpu-study-quality.yaml")
    alphas = load_grid(root / "configs" / "cql-alpha-medium-expert.yaml")
    spec = load_grid(root / "configs" / "cql-alpha50-actors-medium-expert.yaml")
    dataset = "local:halfcheetah-medium-expert"
    assert spec.algorithms == ("cql",) and spec.datasets == (dataset,)
    assert spec.settings() == source.settings()
    assert (spec.seeds, spec.seeds_per_process) == (source.seeds, source.seeds_per_process)
    assert set(spec.architectures) == {"kan4-cqlalpha50", "mlp38-cqlalpha50", "kan38-cqlalpha50"}
    assert spec.baseline == "mlp38-cqlalpha50"
    cql_alpha = alphas.run_config(Cell(dataset, "mlp256-cqlalpha50", 0, "cql")).cql.cql_alpha
    assert cql_alpha == 50.0
    for cell in spec.cells():
        name = cell.arch.removesuffix("-cqlalpha50")
        arch, quality = spec.architectures[cell.arch], source.architectures[name]
        assert (arch.actor, arch.critic, arch.kan) == (quality.actor, quality.critic, quality.kan)
        quality_cell = Cell(dataset, name, cell.seed, "cql")
        assert spec.run_config(cell).cql == replace(source.run_config(quality_cell).cql, cql_alpha=cql_alpha), cell
    assert spec.keep_final_state
    assert "$(GRID_RUN) configs/cql-alpha50-actors-medium-expert.yaml" in (root / "Makefile").read_text()


def test_the_kan_width_grid_trains_a_kan_of_kan4s_parameters_at_twice_its_width_as_the_width_grid_did() -> None:
    """configs/cpu-study-kan-width.yaml: kan[8] with G = 2, k = 1 has exactly kan4's actor parameters on every
    dataset of the grid, and it and an MLP of its width train with the width grid's data, settings, critics and
    rate, so that its reports can set the width grid's records beside them."""
    from dataclasses import replace

    from bench.grid.spec import Cell, load_grid

    root = Path(__file__).resolve().parents[1]
    width = load_grid(root / "configs" / "cpu-study-width.yaml")
    spec = load_grid(root / "configs" / "cpu-study-kan-width.yaml")
    assert list(spec.architectures) == ["kan8-g2k1", "mlp8"]
    assert spec.datasets == width.datasets and spec.algorithms == width.algorithms
    assert spec.settings() == width.settings()
    assert (spec.seeds, spec.seeds_per_process) == (width.seeds, width.seeds_per_process)
    assert spec.keep_final_state
    assert {name: (report.baseline, report.with_grids) for name, report in spec.reports.items()} == {
        "cpu-study-kan-width": ("kan4", ("cpu-study-width",)),
        "cpu-study-kan-width-vs-mlp38": ("mlp38", ("cpu-study-width",)),
    }
    for report in spec.reports.values():
        assert set(report.architectures) - {"kan8-g2k1"} <= set(width.architectures)
    kan8, kan4 = spec.architectures["kan8-g2k1"], width.architectures["kan4"]
    assert (kan8.actor.kind, kan8.actor.hidden) == ("kan", (8,)) and kan8.critic == kan4.critic
    assert kan8.kan == replace(kan4.kan, grid_size=2, spline_order=1)
    for obs_dim, act_dim in ((17, 6), (11, 3)):  # Walker2d and HalfCheetah, Hopper
        kan8_actor = build_network(kan8.actor, obs_dim, 2 * act_dim, kan8.kan)
        kan4_actor = build_network(kan4.actor, obs_dim, 2 * act_dim, kan4.kan)
        assert count_parameters(kan8_actor) == count_parameters(kan4_actor) == {17: 1160, 11: 680}[obs_dim]
    mlp8 = spec.architectures["mlp8"]
    assert (mlp8.actor.kind, mlp8.actor.hidden, mlp8.critic) == ("mlp", kan8.actor.hidden, kan4.critic)
    for dataset in spec.datasets:
        kan4_config = width.run_config(Cell(dataset, "kan4", 0)).cql
        for name in ("kan8-g2k1", "mlp8"):
            assert spec.run_config(Cell(dataset, name, 0)).cql == kan4_config, (dataset, name)
    assert "$(GRID_RUN) configs/cpu-study-kan-width.yaml" in (root / "Makefile").read_text()
