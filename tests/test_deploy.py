"""Table 4, deployment: frozen forms equal the trained actor, ONNX export keeps its actions, int8 is smaller and
evaluated, and the tables, deployment.json and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.loader import load_dataset
from bench.deploy import (
    EXPORT_TOLERANCE,
    ActorDeployment,
    ArchitectureLatency,
    DeployedActor,
    FrozenKANLinear,
    actions_on,
    devices_phrase,
    export_note,
    export_onnx,
    float64_export_error,
    float64_policy,
    normalized_states,
    onnx_policy,
    onnx_score,
    onnx_session,
    order_records,
    score_table,
    torch_policy,
)
from bench.nets.heads import TanhGaussianActor
from bench.nets.kan import KANLinear, KANOptions, spline_features, spline_features_plain
from bench.nets.spec import parse_network_spec
from bench.report.tables import MISSING
from bench.train import device_info, load_trained_actor, train_cell
from tests.d4rl_files import write_small_d4rl_file
from tests.test_train import tiny_config

ARCH_FILE = "rbf-small:\n  actor: rbf[4]\n  critic: mlp[64,64]\n"


@dataclass
class Deployed:
    """A tiny grid of trained actors and what `python -m bench deploy` made of it."""

    results: Path
    tables: Path
    onnx: Path
    code: int
    stdout: str
    stderr: str

    @property
    def data(self) -> dict:
        return json.loads((self.tables / "deployment.json").read_text())


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    root = tmp_path_factory.mktemp("deploy")
    data = write_small_d4rl_file(root / "hopper-tiny.hdf5", env="hopper")
    (root / "archs.yaml").write_text(ARCH_FILE)
    results = root / "results" / "tiny"
    cell = results / "hopper-tiny"
    short = {"steps": 2, "epoch_steps": 2, "eval_every": 2}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: extra threads only wait for the busy cores
    try:
        # The paper's MLP actor (mlp[256]), a KAN actor, an RBF actor; seeds are averaged in the unit test below.
        train_cell(tiny_config(data, arch="mlp", **short), cell / "mlp" / "seed0.json", progress=False)
        train_cell(tiny_config(data, arch="kan-small", **short), cell / "kan-small" / "seed0.json", progress=False)
        rbf = tiny_config(data, arch="rbf-small", arch_file=str(root / "archs.yaml"), **short)
        train_cell(rbf, cell / "rbf-small" / "seed0.json", progress=False)
    finally:
        torch.set_num_threads(threads)
    # A record from before final actors were kept: skipped with a note.
    older = json.loads((cell / "kan-small" / "seed0.json").read_text())
    older["cell"]["seed"] = 7
    (cell / "kan-small" / "seed7.json").write_text(json.dumps(older))

    tables, onnx = root / "tables", root / "onnx"
    stdout, stderr = io.StringIO(), io.StringIO()
    args = ["deploy", str(results), "--tables", str(tables), "--onnx-dir", str(onnx), "--calls", "10"]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*args, "--warmup", "2", "--local-dir", str(root)])
    return Deployed(results, tables, onnx, code, stdout.getvalue(), stderr.getvalue())


@pytest.mark.parametrize(
    "options",
    [
        KANOptions(),
        KANOptions(grid_size=3, spline_order=2, input_norm="tanh"),
        KANOptions(spline_order=1, input_norm="layernorm", base_activation=False),
        KANOptions(grid_size=4, spline_order=5, grid_range=(-1.0, 2.0)),
    ],
)
def test_the_plain_spline_path_and_the_frozen_kan_layer_equal_the_training_forward(options: KANOptions) -> None:
    torch.manual_seed(0)
    layer = KANLinear(5, 3, options)
    x = torch.randn(64, 5) * 3
    lo, hi = layer.grid_lo, layer.grid_hi
    args = (x, layer.normalize_input(x), lo, hi, options.grid_size, options.spline_order, int(options.base_activation))
    torch.testing.assert_close(spline_features_plain(*args), spline_features(*args), atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(FrozenKANLinear(layer)(x), layer(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("spec", ["mlp[256]", "mlp[16,16]", "kan[4]", "kan[4,4]", "rbf[4]"])
def test_the_deployed_actor_acts_as_the_trained_one(spec: str) -> None:
    torch.manual_seed(0)
    actor = TanhGaussianActor(11, 3, parse_network_spec(spec), KANOptions()).eval()
    with torch.no_grad():
        # Larger weights than at initialization (its last layer is scaled by 1e-2): actions well away from 0.
        for layer in actor.network.layers:
            for parameter in layer.parameters():
                parameter.mul_(60.0 if layer is actor.network.layers[-1] else 3.0)
    deployed = DeployedActor(actor)
    assert not any(p.requires_grad for p in deployed.parameters())
    states = np.random.default_rng(0).normal(size=(200, 11)).astype(np.float32) * 2
    expected = torch_policy(actor)(states)
    with torch.no_grad():
        actual = deployed(torch.from_numpy(states)).numpy()
    np.testing.assert_allclose(actual, expected, atol=EXPORT_TOLERANCE, rtol=0)
    assert np.abs(expected).max() > 0.05


def test_an_actor_too_sensitive_to_float32_rounding_is_checked_by_its_float64_export(tmp_path: Path) -> None:
    """A small RBF actor whose second LayerNorm divides by the spread of four nearly equal hidden units moves its
    float32 actions by far more than 1e-5 through rounding alone (the study's rbf[4] actors do, by up to 6.8e-5),
    so no float32 model can match it within 1e-5; exported in float64, its deployment form must."""
    torch.manual_seed(0)
    actor = TanhGaussianActor(11, 3, parse_network_spec("rbf[4]"), KANOptions()).eval()
    first, last = actor.network.layers
    with torch.no_grad():
        first.weight.copy_(first.weight[..., :1].expand_as(first.weight) * 30 + 1e-3 * torch.randn_like(first.weight))
        last.weight.mul_(100.0)
    states = np.random.default_rng(0).normal(size=(2000, 11)).astype(np.float32) * 2
    torch_actions = actions_on(torch_policy(actor), states)
    float64_actions = actions_on(float64_policy(actor), states)
    export_onnx(DeployedActor(actor), tmp_path / "actor.onnx")
    onnx_actions = actions_on(onnx_policy(onnx_session(tmp_path / "actor.onnx")), states)
    assert np.abs(torch_actions - float64_actions).max() > 100 * EXPORT_TOLERANCE  # the actor's own rounding
    assert np.abs(onnx_actions - torch_actions).max() > EXPORT_TOLERANCE  # so the float32 check cannot pass
    path = tmp_path / "actor.float64.onnx"
    assert float64_export_error(actor, states, float64_actions, path) < EXPORT_TOLERANCE / 100
    wrong = float64_actions + 1e-3  # as if the exported graph computed another function
    assert float64_export_error(actor, states, wrong, path) > 0.9e-3

    kan = TanhGaussianActor(11, 3, parse_network_spec("kan[4]"), KANOptions()).eval()  # B-splines export in float64
    assert float64_export_error(kan, states, actions_on(float64_policy(kan), states), path) < 1e-9


def test_the_command_writes_table_4_and_deployment_json(deployed: Deployed) -> None:
    assert deployed.code == 0, deployed.stderr
    assert "deploy of" in deployed.stdout and "3 actor(s), 1 record(s) skipped" in deployed.stdout
    notes = [line for line in deployed.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "kan-small/seed7.json" in notes[0] and "no final actor" in notes[0]
    assert sum(line.startswith("[") for line in deployed.stderr.splitlines()) == 3  # progress, one line per actor

    data = deployed.data
    actors = {(a["arch"], a["seed"]): a for a in data["actors"]}
    assert sorted(actors) == [("kan-small", 0), ("mlp", 0), ("rbf-small", 0)]
    assert actors[("mlp", 0)]["parameters"] == 11 * 256 + 256 + 256 * 6 + 6
    assert actors[("kan-small", 0)]["parameters"] == (11 * 4 + 4 * 6) * 10
    for actor in data["actors"]:
        assert actor["fp32_max_action_error"] <= EXPORT_TOLERANCE
        assert 0 <= actor["float32_rounding"] < EXPORT_TOLERANCE  # the actor's float32 against float64 actions
        assert actor["states_checked"] > 100 and actor["episodes"] == 2
        assert actor["fp32_bytes"] > 0 and actor["int8_bytes"] > 0
        for key in ("record_score", "fp32_score", "int8_score"):
            assert np.isfinite(actor[key])
    assert [(entry["env"], entry["arch"]) for entry in data["latency"]] == [
        ("hopper", "kan-small"),
        ("hopper", "mlp"),
        ("hopper", "rbf-small"),
    ]
    for entry in data["latency"]:
        assert {(r["runtime"], r["batch"]) for r in entry["results"]} == {
            (runtime, batch) for runtime in ("torch", "onnx-fp32", "onnx-int8") for batch in (1, 256)
        }
        for result in entry["results"]:
            assert result["calls"] == (10 if result["batch"] == 1 else 2) and result["warmup"] == 2
            assert 0 < result["min_us"] <= result["median_us"] <= result["p90_us"]
    assert data["settings"]["threads"]["torch"] == 1
    assert {"onnx", "onnxruntime", "torch"} <= set(data["versions"])
    assert data["skipped"] and "seed7.json" in data["skipped"][0]


def markdown_rows(section: str) -> list[list[str]]:
    """The body rows of the Markdown table in `section`, as stripped cells."""
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:]]


def test_the_tables_have_a_row_per_architecture_and_per_cell(deployed: Deployed) -> None:
    markdown = (deployed.tables / "table4_deployment.md").read_text()
    latex = (deployed.tables / "table4_deployment.tex").read_text()
    assert latex.count("\\begin{table}") == 2 and "python -m bench deploy" in latex.splitlines()[0]
    assert "\\label{tab:table4-deployment}" in latex and "\\label{tab:table4-deployment-scores}" in latex
    assert latex.isascii()  # pdflatex without extra packages
    _, sizes, scores = markdown.split("**Table 4:")
    assert sizes.startswith(" Deployment size and CPU latency.") and scores.startswith(" Deployment scores.")

    rows = {row[1]: row for row in markdown_rows(sizes)}
    assert list(rows) == ["kan-small", "mlp", "rbf-small"]  # grid order unknown: by name
    assert [row[0] for row in rows.values()] == ["hopper", "", ""]  # the environment once, on its first row
    assert rows["mlp"][2] == "4,614" and rows["kan-small"][2] == "680"
    data = {a["arch"]: a for a in deployed.data["actors"]}
    assert rows["mlp"][3:5] == [f"{data['mlp']['fp32_bytes']:,}", f"{data['mlp']['int8_bytes']:,}"]
    assert all(len(row) == 11 and all(" (" in cell for cell in row[5:]) for row in rows.values())

    cells = markdown_rows(scores)
    assert [row[:3] for row in cells] == [
        ["hopper-tiny (local)", "kan-small", "1"],
        ["", "mlp", "1"],
        ["", "rbf-small", "1"],
    ]
    kan = data["kan-small"]
    assert cells[0][3:6] == [f"{kan[k]:.1f}" for k in ("record_score", "fp32_score", "int8_score")]


def test_the_score_table_averages_seeds_and_shows_missing_scores() -> None:
    def row(dataset: str, arch: str, seed: int, scores: tuple[float | None, float, float]) -> ActorDeployment:
        record, fp32, int8 = scores
        return ActorDeployment(
            record=f"{dataset}/{arch}/seed{seed}.json",
            dataset=f"d4rl:{dataset}",
            dataset_name=dataset,
            env="hopper",
            arch=arch,
            seed=seed,
            actor_spec="mlp[256]",
            parameters=4614,
            fp32_bytes=20000,
            int8_bytes=9000,
            states_checked=1000,
            fp32_max_action_error=1e-8,
            int8_max_action_error=1e-3,
            episodes=10,
            evaluation_seed=10 * seed,
            record_score=record,
            fp32_score=fp32,
            int8_score=int8,
        )

    table = score_table(
        [
            row("hopper-medium-v2", "mlp", 0, (50.0, 50.0, 48.0)),
            row("hopper-medium-v2", "mlp", 1, (60.0, 61.0, 57.0)),
            row("hopper-medium-v2", "kan1-mlp", 0, (None, 40.0, 40.5)),
        ]
    )
    cells = [[cell.text for cell in cells] for cells in table.rows]
    assert cells == [
        ["hopper-medium-v2", "mlp", "2", "55.0 ± 7.1", "55.5 ± 7.8", "52.5 ± 6.4", "−2.5"],
        ["", "kan1-mlp", "1", MISSING, "40.0", "40.5", MISSING],
    ]
    assert table.midrules == set()  # one dataset: no rule inside it

    exact, sensitive = row("walker2d-medium", "kan4", 0, (1.0, 1.0, 1.0)), row("walker2d-medium", "rbf4", 3, (1.0,) * 3)
    sensitive = replace(sensitive, fp32_max_action_error=4.58e-5, float32_rounding=4.74e-5, float64_export_error=3e-16)
    assert export_note([exact]).endswith("within 1e-5 of the PyTorch actor's (largest difference 1.0e-08).")
    note = export_note([exact, sensitive])
    assert "(largest difference 1.0e-08), except for actors whose own float32 evaluation" in note
    assert note.endswith("rbf4 seed 3: up to 4.6e-05, own rounding up to 4.7e-05, float64 export within 3.0e-16.")


def test_onnx_actions_equal_pytorch_on_the_dataset_states(deployed: Deployed) -> None:
    for actor_row in deployed.data["actors"]:
        record_path = Path(actor_row["record"])
        actor, record = load_trained_actor(record_path)
        dataset = load_dataset(record["cell"]["dataset"])
        states = normalized_states(dataset, record["config"]["normalize_states"])
        reference = actions_on(torch_policy(actor), states)
        stem = deployed.onnx / record_path.relative_to(deployed.results).with_suffix("")
        fp32 = actions_on(onnx_policy(onnx_session(stem.with_name(stem.name + ".onnx"))), states)
        int8 = actions_on(onnx_policy(onnx_session(stem.with_name(stem.name + ".int8.onnx"))), states)
        np.testing.assert_allclose(fp32, reference, atol=EXPORT_TOLERANCE, rtol=0)
        np.testing.assert_allclose(int8, reference, atol=0.05, rtol=0)
        assert np.abs(reference).max() > 0  # a real comparison, not of zeros


def test_a_kept_model_runs_on_raw_states_with_the_inputs_file_beside_it(deployed: Deployed) -> None:
    """Outside the suite: raw dataset states, the inputs file's normalization, the .onnx file; the actor's actions."""
    for actor_row in deployed.data["actors"]:
        record_path = Path(actor_row["record"])
        actor, record = load_trained_actor(record_path)
        stem = deployed.onnx / record_path.relative_to(deployed.results).with_suffix("")
        inputs = json.loads(stem.with_name(stem.name + ".inputs.json").read_text())
        assert inputs["record"] == record_path.name and inputs["env_id"] == record["dataset"]["env_id"]
        assert inputs["input"]["shape"] == ["batch", 11] and inputs["output"]["shape"] == ["batch", 3]
        raw = load_dataset(record["cell"]["dataset"]).transitions.observations
        mean, std = (np.asarray(inputs["input"][key]) for key in ("state_mean", "state_std"))
        states = ((raw - mean) / std).astype(np.float32)
        session = onnx_session(stem.with_name(stem.name + ".onnx"))
        expected = actions_on(torch_policy(actor), normalized_states(load_dataset(record["cell"]["dataset"]), True))
        np.testing.assert_allclose(actions_on(onnx_policy(session), states), expected, atol=EXPORT_TOLERANCE, rtol=0)


def test_int8_is_smaller_for_the_mlp_actor_and_its_score_is_evaluated(deployed: Deployed) -> None:
    rows = [a for a in deployed.data["actors"] if a["arch"] == "mlp"]
    for row in rows:
        assert row["int8_bytes"] < 0.5 * row["fp32_bytes"]
    row = rows[0]
    _, record = load_trained_actor(Path(row["record"]))
    dataset = load_dataset(record["cell"]["dataset"])
    stem = deployed.onnx / Path(row["record"]).relative_to(deployed.results).with_suffix("")
    session = onnx_session(stem.with_name(stem.name + ".int8.onnx"))
    rerun = onnx_score(session, "hopper", 2, record["evaluation"]["seed"], dataset.state_mean, dataset.state_std)
    assert rerun == row["int8_score"]


def test_a_rerun_keeps_unchanged_rows_and_latencies_without_the_data(
    deployed: Deployed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Table 4 of a grid whose data only some CPUs regenerate stays whole: rows whose actor file and data have
    their recorded digests are kept without the data, with the latencies timed on them and the machine that
    timed them; other timing settings need the data again."""
    tables = tmp_path / "tables"
    shutil.copytree(deployed.tables, tables)
    first = json.loads((tables / "deployment.json").read_text())
    assert all(len(a["actor_sha256"]) == 64 and len(a["dataset_sha256"]) == 64 for a in first["actors"])
    this_machine = device_info(torch.device("cpu"))["name"]
    assert {latency["machine"] for latency in first["latency"]} == {this_machine}
    command = ["deploy", str(deployed.results), "--tables", str(tables), "--calls", "10", "--warmup", "2"]
    data = Path(first["actors"][0]["dataset"].removeprefix("local:"))
    hidden = data.with_name("hidden.hdf5")
    data.rename(hidden)
    try:
        capsys.readouterr()
        assert main(command) == 0
        out = capsys.readouterr()
        assert "3 actor(s) (3 kept from deployment.json, unchanged)" in out.out
        assert out.err.count("kept from deployment.json") == 3
        second = json.loads((tables / "deployment.json").read_text())
        assert second["actors"] == first["actors"] and second["latency"] == first["latency"]
        assert main([*command[:-4], "--calls", "12", "--warmup", "2"]) == 2  # timing again needs the data
        assert "hopper-tiny" in capsys.readouterr().err
        assert main([*command, "--onnx-dir", str(tmp_path / "onnx")]) == 2  # every model asked for: none kept
        assert "hopper-tiny" in capsys.readouterr().err
    finally:
        hidden.rename(data)

    second["latency"][0]["machine"] = "Other CPU"  # as if timed elsewhere, before this machine's rerun
    (tables / "deployment.json").write_text(json.dumps(second))
    assert main(command) == 0
    third = json.loads((tables / "deployment.json").read_text())
    assert [latency["machine"] for latency in third["latency"]] == ["Other CPU", this_machine, this_machine]
    # hopper was timed on both machines, each architecture on one: the caption names the architectures.
    archs = [latency["arch"] for latency in third["latency"]]
    devices = f"Devices: Other CPU ({archs[0]}); {this_machine} ({archs[1]}, {archs[2]})."
    assert devices in (tables / "table4_deployment.md").read_text()

    (tables / "deployment.json").write_text(json.dumps({**third, "latency": [{"env": "hopper"}]}))
    capsys.readouterr()
    assert main(command) == 2  # a file this version cannot read is never silently replaced
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tables / 'deployment.json'} is not a deployment.json" in err
    assert "--recompute" in err


def test_a_folder_without_usable_records_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deployed: Deployed
) -> None:
    assert main(["deploy", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    older = tmp_path / "older"
    older.mkdir()
    (older / "seed7.json").write_text((deployed.results / "hopper-tiny" / "kan-small" / "seed7.json").read_text())
    assert main(["deploy", str(older), "--tables", str(tmp_path / "tables")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: no finished record with its final actor")
    assert "1 JSON file(s) skipped" in err[0] and "no final actor seed7.actor.pt" in err[0]  # names why
    assert not (tmp_path / "tables").exists()
    assert main(["deploy", str(deployed.results), "--calls", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --calls must be at least 1")


def test_a_folder_of_several_algorithms_gets_rows_per_algorithm(tmp_path: Path) -> None:
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    results = tmp_path / "results" / "algorithms"
    short = {"steps": 2, "epoch_steps": 2, "eval_every": 2, "arch": "kan-small"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for algo in ("td3bc", "iql", "bc"):
            out = results / algo / "hopper-tiny" / "kan-small" / "seed0.json"
            train_cell(tiny_config(data, algo=algo, **short), out, progress=False)
    finally:
        torch.set_num_threads(threads)
    tables = tmp_path / "tables"
    code = main(["deploy", str(results), "--tables", str(tables), "--calls", "3", "--warmup", "0"])
    assert code == 0
    rows = json.loads((tables / "deployment.json").read_text())["actors"]
    assert sorted(row["arch"] for row in rows) == ["BC kan-small", "IQL kan-small", "TD3+BC kan-small"]
    markdown = (tables / "table4_deployment.md").read_text()
    assert all(f"| {name} kan-small |" in markdown for name in ("TD3+BC", "IQL", "BC"))


def test_records_of_a_multi_algorithm_grid_follow_its_architecture_order(tmp_path: Path) -> None:
    grid = "architectures: [mlp-c2, kan1-c2]\nalgorithms: [bc, td3bc]\ndatasets: [local:hopper-medium]\nseeds: [0]\n"
    (tmp_path / "grid.yaml").write_text(grid)
    records = {
        tmp_path / algo / arch: {
            "dataset": {"env": "hopper"},
            "cell": {"arch": arch, "dataset": "local:hopper-medium", "seed": 0},
            "config": {"algo": algo},
        }
        for algo in ("td3bc", "bc")
        for arch in ("kan1-c2", "mlp-c2")
    }
    order = [path.relative_to(tmp_path).as_posix() for path in order_records(tmp_path, records)]
    assert order == ["bc/mlp-c2", "bc/kan1-c2", "td3bc/mlp-c2", "td3bc/kan1-c2"]
    # One algorithm's folder reads the grid file above it.
    assert order_records(tmp_path / "bc", {p: r for p, r in records.items() if p.parent.name == "bc"}) == [
        tmp_path / "bc" / "mlp-c2",
        tmp_path / "bc" / "kan1-c2",
    ]


def test_the_caption_names_what_each_machine_timed() -> None:
    def timed(*rows: tuple[str, str, str]) -> list[ArchitectureLatency]:
        return [ArchitectureLatency(env, arch, "mlp[8]", "r.json", machine=machine) for env, arch, machine in rows]

    one = timed(("hopper", "mlp", "A"), ("walker2d", "kan", "A"))
    assert devices_phrase(one) == "Device: A"
    by_env = timed(("hopper", "mlp", "A"), ("hopper", "kan", "A"), ("walker2d", "mlp", "B"), ("walker2d", "kan", "B"))
    assert devices_phrase(by_env) == "Devices: A (hopper); B (walker2d)"
    by_arch = timed(("hopper", "mlp", "A"), ("walker2d", "mlp", "A"), ("hopper", "kan", "B"), ("walker2d", "kan", "B"))
    assert devices_phrase(by_arch) == "Devices: A (mlp); B (kan)"
    mixed = timed(("hopper", "mlp", "A"), ("walker2d", "mlp", "B"), ("hopper", "kan", "B"))
    assert devices_phrase(mixed) == "Devices: A (hopper/mlp); B (walker2d/mlp, hopper/kan)"
