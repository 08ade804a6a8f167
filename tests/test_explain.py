"""`bench explain`: a KAN actor's edge curves are what its first layer computes, attribution and saliency rank the
features an actor uses, symbolic fits find known functions, and the command writes its files or fails in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.registry import ENVS, HOPPER_OBSERVATIONS
from bench.errors import BenchError
from bench.explain import (
    best_symbolic_fit,
    default_out_dir,
    edge_curves,
    edge_spread,
    edge_values,
    explain_record,
    feature_attribution,
    first_kan_layer,
    gradient_saliency,
    load_states,
    symbolic_fits,
)
from bench.nets.heads import TanhGaussianActor
from bench.nets.kan import KANLinear, KANOptions
from bench.nets.spec import parse_network_spec
from bench.train import actor_path, load_trained_actor, train_cell
from tests.d4rl_files import write_small_d4rl_file
from tests.test_train import tiny_config

# A KAN actor of width 2 keeps the edge figure at 11 x 2 panels, most of the test's time.
ARCHITECTURES = """
kan-tiny:
  actor: kan[2]
  critic: mlp[16,16]
mlp-tiny:
  actor: mlp[16]
  critic: mlp[16,16]
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny finished KAN-actor cell and MLP cell on one generated Hopper file, their actors beside them."""
    root = tmp_path_factory.mktemp("explain")
    data = write_small_d4rl_file(root / "hopper-tiny.hdf5", env="hopper")
    arch_file = root / "archs.yaml"
    arch_file.write_text(ARCHITECTURES)
    paths = {}
    for arch in ("kan-tiny", "mlp-tiny"):
        paths[arch] = root / arch / "seed0.json"
        config = tiny_config(data, arch=arch, arch_file=str(arch_file), steps=4, eval_every=4, eval_episodes=1)
        train_cell(config, paths[arch], progress=False)
    return paths


def test_every_env_names_each_observation_entry() -> None:
    for env in ENVS.values():
        assert len(env.observation_names) == env.obs_dim
        assert len(set(env.observation_names)) == env.obs_dim
    assert ENVS["hopper"].observation_names[:2] == ("torso height", "torso angle")


def test_edges_summed_over_features_are_the_trained_layer_on_real_states(records: dict[str, Path]) -> None:
    actor, record = load_trained_actor(records["kan-tiny"])
    states = load_states(record)
    assert states.normalized and states.names == HOPPER_OBSERVATIONS
    np.testing.assert_allclose(states.values.mean(0), 0.0, atol=1e-4)
    layer = first_kan_layer(actor, record["architecture"]["actor"])
    x = torch.as_tensor(states.values)
    with torch.no_grad():
        phi = edge_values(layer, x)
        assert phi.shape == (len(x), 2, 11)
        torch.testing.assert_close(phi.sum(-1), layer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options", [KANOptions(input_norm="tanh"), KANOptions(base_activation=False, grid_range=(-1.0, 2.0))]
)
def test_edges_sum_to_the_layer_for_other_kan_options(options: KANOptions) -> None:
    torch.manual_seed(0)
    layer = KANLinear(5, 3, options)
    x = 2.0 * torch.randn(64, 5)
    with torch.no_grad():
        torch.testing.assert_close(edge_values(layer, x).sum(-1), layer(x), rtol=1e-5, atol=1e-6)


def test_each_curve_is_its_edge_at_the_grid_points_whatever_the_other_features() -> None:
    torch.manual_seed(0)
    layer = KANLinear(4, 3, KANOptions(input_norm="tanh"))
    low, high = np.array([-2.0, -1.0, 0.0, -3.0]), np.array([1.0, 2.0, 0.5, 3.0])
    grid, curves = edge_curves(layer, low, high, points=7)
    np.testing.assert_allclose(grid[0], low, atol=1e-6)
    np.testing.assert_allclose(grid[-1], high, atol=1e-6)
    for i in range(4):
        x = torch.randn(7, 4)
        x[:, i] = torch.as_tensor(grid[:, i])
        with torch.no_grad():
            np.testing.assert_allclose(edge_values(layer, x)[:, :, i].numpy(), curves[:, :, i], rtol=1e-5, atol=1e-7)


X = np.linspace(-2.5, 2.2, 101)


@pytest.mark.parametrize(
    ("expected", "y"),
    [
        ("linear", 2.0 * X - 1.0),
        ("quadratic", X**2 - 0.5 * X),
        ("sin", 0.7 * np.sin(1.8 * X + 0.4) - 0.1),
        ("tanh", 0.5 * np.tanh(2.0 * X - 0.5) + 0.2),
        ("exp", 0.3 * np.exp(0.9 * X) - 0.4),
    ],
)
def test_symbolic_fitting_recovers_a_known_function(expected: str, y: np.ndarray) -> None:
    best = best_symbolic_fit(symbolic_fits(X, y))
    assert best.name == expected
    assert best.r2 > 0.99


def test_a_line_is_fitted_exactly_and_a_constant_edge_as_a_flat_line() -> None:
    line = best_symbolic_fit(symbolic_fits(X, 2.0 * X - 1.0))
    assert line.params == pytest.approx({"a": 2.0, "b": -1.0}) and line.formula == "2*x - 1"
    assert line.r2 == pytest.approx(1.0)
    flat = best_symbolic_fit(symbolic_fits(X, np.full_like(X, 0.25)))
    assert (flat.name, flat.params["a"], flat.r2) == ("linear", 0.0, 1.0)


def test_attribution_sums_to_one_and_ranks_an_ignored_feature_last() -> None:
    torch.manual_seed(0)
    layer = KANLinear(5, 3)
    with torch.no_grad():
        layer.base_weight[:, 2] = 0.0
        layer.spline_scaler[:, 2] = 0.0
    states = np.random.default_rng(0).normal(size=(500, 5)).astype(np.float32)
    spread = edge_spread(layer, states, batch_size=128)
    expected = torch.std(edge_values(layer, torch.as_tensor(states)).detach(), dim=0, correction=0).numpy()
    np.testing.assert_allclose(spread, expected, rtol=1e-4, atol=1e-7)
    attribution = feature_attribution(spread)
    assert attribution.sum() == pytest.approx(1.0)
    assert attribution[2] == 0.0 and int(np.argmin(attribution)) == 2
    assert np.all(attribution[[0, 1, 3, 4]] > 0.0)


def test_saliency_is_the_mean_absolute_jacobian_and_ignores_an_unused_feature() -> None:
    torch.manual_seed(0)
    actor = TanhGaussianActor(5, 2, parse_network_spec("mlp[8]"), KANOptions()).eval()
    with torch.no_grad():
        actor.network.layers[0].weight[:, 3] = 0.0
    states = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    saliency = gradient_saliency(actor, states, batch_size=7)

    def action(x: torch.Tensor) -> torch.Tensor:
        return actor(x.unsqueeze(0), deterministic=True, need_log_prob=False)[0][0]

    jacobians = torch.stack([torch.autograd.functional.jacobian(action, torch.as_tensor(s)) for s in states])
    expected = jacobians.abs().mean((0, 1)).double().numpy()
    np.testing.assert_allclose(saliency, expected / expected.sum(), rtol=1e-5)
    assert saliency[3] == 0.0 and saliency.sum() == pytest.approx(1.0)


def test_explain_writes_the_files_of_a_kan_actor_beside_an_mlp(records: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kan"
    explanation = explain_record(records["kan-tiny"], out_dir=out, compare=records["mlp-tiny"])
    names = sorted(path.name for path in explanation.files)
    expected = ["attribution.pdf", "attribution.png", "edges.pdf", "edges.png", "explain.json", "symbolic.md"]
    assert names == expected
    for name in names:
        assert (out / name).stat().st_size > 0
    assert (out / "edges.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "edges.pdf").read_bytes()[:5] == b"%PDF-"
    summary = json.loads((out / "explain.json").read_text())
    assert summary["features"] == list(HOPPER_OBSERVATIONS)
    for block in (summary["attribution"], summary["saliency"], summary["compare"]["saliency"]):
        assert list(block["scores"]) == list(HOPPER_OBSERVATIONS)
        assert sum(block["scores"].values()) == pytest.approx(1.0)
    assert summary["compare"]["actor"] == "mlp[16]"
    assert len(summary["edges"]) == 11 * 2
    edge = summary["edges"][0]
    assert (edge["feature"], edge["unit"]) == ("torso height", "unit 0")
    assert edge["best_fit"]["name"] in edge["r2"] and 0.0 < edge["best_fit"]["r2"] <= 1.0
    table = (out / "symbolic.md").read_text().splitlines()
    assert sum(line.startswith("| torso height |") for line in table) == 2
    assert len([line for line in table if line.startswith("| ")]) == 2 + 11 * 2
    assert "explain.json" in explanation.format()


def test_an_mlp_actor_gets_the_saliency_only_and_the_default_folder(
    records: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["explain", str(records["mlp-tiny"])]) == 0
    out = default_out_dir(json.loads(records["mlp-tiny"].read_text()))
    assert out == Path("figures/explain/local-hopper-tiny/mlp-tiny/seed0")
    assert sorted(path.name for path in out.iterdir()) == ["attribution.pdf", "attribution.png", "explain.json"]
    summary = json.loads((out / "explain.json").read_text())
    assert summary["attribution"] is None and summary["edges"] == []
    assert sum(summary["saliency"]["scores"].values()) == pytest.approx(1.0)


def test_the_command_fails_in_one_line_without_the_actor(
    records: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = shutil.copy(records["kan-tiny"], tmp_path / "seed0.json")
    assert main(["explain", str(record), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed0.actor.pt is missing" in err
    assert not (tmp_path / "out").exists()


def test_bodies_without_univariate_edges_and_other_data_are_refused(records: dict[str, Path], tmp_path: Path) -> None:
    record = json.loads(records["mlp-tiny"].read_text())
    record["architecture"]["actor"] = "rbf[4]"
    path = tmp_path / "rbf.json"
    path.write_text(json.dumps(record))
    actor = TanhGaussianActor(11, 3, parse_network_spec("rbf[4]"), KANOptions(**record["architecture"]["kan"]))
    torch.save(actor.state_dict(), actor_path(path))
    with pytest.raises(BenchError, match=r"rbf\[4\].*kan\[\.\.\.\]"):
        explain_record(path, out_dir=tmp_path / "out")
    record = json.loads(records["kan-tiny"].read_text())
    record["dataset"]["sha256"] = "0" * 64
    with pytest.raises(BenchError, match="other transitions than the run trained on"):
        load_states(record)


def test_another_algorithms_record_gets_a_folder_of_its_own(records: dict[str, Path]) -> None:
    record = json.loads(records["mlp-tiny"].read_text())
    assert default_out_dir(record) == Path("figures/explain/local-hopper-tiny/mlp-tiny/seed0")
    record["config"]["algo"] = "td3bc"
    assert default_out_dir(record) == Path("figures/explain/td3bc/local-hopper-tiny/mlp-tiny/seed0")
