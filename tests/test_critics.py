"""Table 10, what the critics expect where the actors go: returns by hand, the critics of one seed of a group
against the agent's own, the table, critics.json and the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.agents.registry import get_algorithm
from bench.cli import main
from bench.critics import (
    ActorCritics,
    DatasetCritics,
    critic_values,
    critics_figure,
    critics_table,
    discounted_returns,
    return_horizon,
    seed_critics,
)
from bench.data.loader import load_dataset
from bench.errors import BenchError
from bench.evaluate import EpisodeStep, evaluate_policy
from bench.nets.heads import EnsembleCritic
from bench.nets.kan import KANOptions
from bench.nets.spec import get_architecture, parse_network_spec
from bench.report.records import record_algorithm
from bench.report.tables import MISSING, to_markdown
from bench.train import final_state_path, load_trained_actor, train_group
from tests.d4rl_files import write_small_d4rl_file
from tests.test_algorithms import tiny_config as algorithm_config
from tests.test_train import tiny_config


def test_returns_are_discounted_to_each_episodes_end_and_count_where_the_rest_is_known() -> None:
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    ends, terminal = np.array([3, 6]), np.array([True, False])
    returns, counted = discounted_returns(rewards, ends, terminal, discount=0.5, horizon=2)
    np.testing.assert_allclose(returns, [1.75, 1.5, 1.0, 3.5, 3.0, 2.0])
    # The first episode fell: every step's return is whole. The second hit its time limit: a step counts when at
    # least 2 steps (its own included) remain, so that the unseen rest weighs 0.5 ** 2 of what follows at most.
    np.testing.assert_array_equal(counted, [True, True, True, True, True, False])
    # discount ** horizon is the first power under 1%.
    assert return_horizon(0.99) == 459 and 0.99**459 < 0.01 < 0.99**458
    assert return_horizon(0.5) == 7 and 0.5**7 < 0.01 < 0.5**6


def test_every_step_of_the_episodes_reaches_on_step_with_its_episode() -> None:
    """The hook the critics read the episodes through: each running episode's state, action, reward and end,
    with the same totals as the evaluation's."""
    steps: list[EpisodeStep] = []
    rng = np.random.default_rng(0)
    result = evaluate_policy(
        "hopper", lambda obs: rng.uniform(-1, 1, (len(obs), 3)), episodes=3, seed=5, on_step=steps.append
    )
    episode = np.concatenate([s.episodes for s in steps])
    rewards = np.concatenate([s.rewards for s in steps])
    np.testing.assert_array_equal(np.bincount(episode, minlength=3), result.lengths)
    np.testing.assert_allclose([rewards[episode == k].sum() for k in range(3)], result.returns)
    terminated = np.concatenate([s.terminated for s in steps])
    assert terminated.sum() == 3  # a random hopper falls in each episode, once
    assert all(len(s.states) == len(s.actions) == len(s.rewards) for s in steps)


def test_the_table_puts_q_beside_the_return_and_leaves_upside_down_empty_without_such_steps(tmp_path: Path) -> None:
    def actor(arch: str, seed: int, flipped: float | None) -> ActorCritics:
        return ActorCritics(
            f"r/{arch}/{seed}", "local:a", "a (local)", arch, seed, 2, 0, 10.0 + seed, 100, 50.0 + seed, 20.0,
            0 if flipped is None else 30, flipped, None if flipped is None else 5.0, 900, 40.0, 41.0, 0.99, 459,
        )  # fmt: skip

    table = critics_table(
        [actor("mlp", 0, None), actor("mlp", 1, None), actor("kan", 0, 80.0), actor("kan", 1, None)],
        {"local:a": DatasetCritics("local:a", "a (local)")},
    )
    rows = [line for line in to_markdown(table).splitlines() if line.startswith("| ") and ":--" not in line][1:]
    assert rows[0] == (
        f"| a (local) | mlp | 2 | 50.5 ± 0.7 | 20.0 ± 0.0 | {MISSING} | {MISSING} | 40.0 ± 0.0 | 41.0 ± 0.0 "
        "| 10.5 ± 0.7 |"
    )
    assert rows[1].startswith("|  | kan | 2 | 50.5 ± 0.7 | 20.0 ± 0.0 | 80.0 | 5.0 |")
    figures = critics_figure(
        [actor("mlp", 0, None), actor("kan", 0, 80.0), replace(actor("kan", 1, None), dataset="local:b")],
        {"local:a": DatasetCritics("local:a", "a (local)"), "local:b": DatasetCritics("local:b", "b (local)")},
        tmp_path,
    )
    assert sorted(p.name for p in figures) == ["critics.pdf", "critics.png"] and figures[0].stat().st_size > 0
    assert "Discount 0.99: a step of an episode cut by its time limit counts when at least 459 steps" in table.notes[0]
    assert "over the seeds with counted steps upside down only: a (local) kan (1 of 2)." in table.notes[1]


@pytest.mark.parametrize("spec", ["mlp[8,8]", "kan[3]"])
def test_one_seeds_critics_cut_from_its_group_give_its_values(spec: str) -> None:
    torch.manual_seed(0)
    kan = KANOptions()
    group = EnsembleCritic(5, 2, parse_network_spec(spec), kan, num_critics=2, population=3)
    with torch.no_grad():
        for parameter in group.parameters():  # every member different, the KAN's spline weights included
            parameter.add_(torch.randn_like(parameter))
    final_state = {"agent": {"population": 3, "critic": group.state_dict()}}
    record = {"architecture": {"critic": spec, "kan": asdict(kan)}}
    states = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    actions = np.random.default_rng(1).uniform(-1, 1, size=(40, 2)).astype(np.float32)
    with torch.no_grad():
        q = group(torch.as_tensor(states).expand(3, -1, -1), torch.as_tensor(actions).expand(3, -1, -1))
    for member in range(3):
        alone = seed_critics(final_state, record, 5, 2, 2, member)
        expected = q[:, member].min(dim=0).values.double().numpy()
        np.testing.assert_allclose(critic_values(alone, states, actions), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(BenchError, match="shape"):
        seed_critics(final_state, record, 5, 2, 3, 0)  # the record says 3 critics, the state holds 2 per seed


def group_critic_values(
    final: Path, record_path: Path, member: int, states: torch.Tensor, actions: torch.Tensor
) -> np.ndarray:
    """min over the critics of seed `member` (its record at `record_path`), through the trainer's own agent of the
    group loaded from `final`."""
    state = torch.load(final, map_location="cpu", weights_only=False)
    record = json.loads(record_path.read_text())
    algorithm = get_algorithm(record_algorithm(record))
    settings = algorithm.config(**record["config"][algorithm.name])
    arch = get_architecture(record["cell"]["arch"])
    population = state["agent"]["population"]
    agent = algorithm.agent(states.shape[-1], actions.shape[-1], arch, settings, population=population)
    agent.load_state_dict(state["agent"])
    with torch.no_grad():
        q = agent.critic(states.expand(population, -1, -1), actions.expand(population, -1, -1))
    return q[:, member].min(dim=0).values.double().numpy()


def test_the_critics_are_the_groups_own_on_the_actors_episodes_and_on_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    results = tmp_path / "results" / "tiny"
    folder = results / "hopper-tiny" / "mlp-small"
    outs = [folder / f"seed{seed}.json" for seed in (0, 1)]
    config = tiny_config(data, steps=4, eval_every=4, eval_episodes=2)
    train_group(config, [0, 1], outs, progress=False, keep_final_state=True)
    alone = results / "hopper-tiny" / "kan-small" / "seed3.json"
    train_group(tiny_config(data, arch="kan-small", steps=4, eval_every=4), [3], [alone], progress=False)
    tables = tmp_path / "tables"
    command = ["critics", str(results), "--tables", str(tables), "--figures", str(tmp_path / "figures")]

    assert main(command) == 0
    out = capsys.readouterr()
    assert "critics of 2 trained actor(s)" in out.out and "no final state seed3.final.pt" in out.out
    document = json.loads((tables / "critics.json").read_text())
    assert [(a["arch"], a["seed"]) for a in document["actors"]] == [("mlp-small", 0), ("mlp-small", 1)]

    dataset = load_dataset(f"local:{data}")
    final = final_state_path(outs)
    normalized = (dataset.transitions.observations - dataset.state_mean) / dataset.state_std
    for member, row in enumerate(document["actors"]):
        # Every step of a tiny actor's hopper episodes ends in a fall: all counted, discounted to the end.
        record = json.loads(outs[member].read_text())
        assert row["steps"] == sum(record["curve"][-1]["episode_lengths"]) and row["upside_down_steps"] == 0
        assert row["q_upside_down"] is None and (row["discount"], row["horizon"]) == (0.99, 459)
        # On the data: the group's own critics of that seed, over the data's counted transitions.
        ends = np.cumsum([59, 45, 79, 34])
        terminal = dataset.transitions.dones[ends - 1] > 0
        returns, counted = discounted_returns(dataset.transitions.rewards, ends, terminal, 0.99, 459)
        q = group_critic_values(
            final,
            outs[member],
            member,
            torch.as_tensor(normalized[counted], dtype=torch.float32),
            torch.as_tensor(dataset.transitions.actions[counted]),
        )
        # Only the 45-step episode ends by falling in the Q-learning view (the file's last row, the other fall,
        # is dropped); the others are far shorter than the horizon.
        assert row["data_steps"] == counted.sum() == 45
        assert row["q_data"] == pytest.approx(q.mean(), rel=1e-5)
        assert row["returns_data"] == pytest.approx(returns[counted].mean(), rel=1e-9)

    # On the actor's own steps: its episodes replayed, the same critics on the states and actions it took.
    actor, record = load_trained_actor(outs[1])
    steps: list[EpisodeStep] = []
    evaluation = record["evaluation"]
    mean, std = (
        np.asarray(evaluation["state_normalization"]["mean"]),
        np.asarray(evaluation["state_normalization"]["std"]),
    )
    evaluate_policy(
        "hopper",
        lambda obs: actor.act(torch.as_tensor(obs)).detach().numpy(),
        episodes=2,
        seed=evaluation["seed"],
        state_mean=mean,
        state_std=std,
        on_step=steps.append,
    )
    states = np.concatenate([s.states for s in steps])
    actions = np.concatenate([s.actions for s in steps])
    q = group_critic_values(
        final, outs[1], 1, torch.as_tensor((states - mean) / std, dtype=torch.float32), torch.as_tensor(actions)
    )
    assert document["actors"][1]["q"] == pytest.approx(q.mean(), rel=1e-5)
    episode = np.concatenate([s.episodes for s in steps])
    rewards = np.concatenate([s.rewards for s in steps])
    returns = np.concatenate(
        [
            discounted_returns(rewards[episode == k], np.array([np.sum(episode == k)]), np.array([True]), 0.99, 459)[0]
            for k in (0, 1)
        ]
    )
    assert document["actors"][1]["returns"] == pytest.approx(returns.mean(), rel=1e-9)
    assert (tables / "table10_critics.md").exists() and (tables / "table10_critics.tex").exists()
    assert (tmp_path / "figures" / "critics.png").stat().st_size > 0 and (tmp_path / "figures" / "critics.pdf").exists()

    # Unchanged actors, final state and data: kept, without the data.
    data.rename(tmp_path / "elsewhere.hdf5")
    assert main(command) == 0
    assert "(2 kept from the earlier critics.json" in capsys.readouterr().out
    assert json.loads((tables / "critics.json").read_text()) == document
    (tmp_path / "elsewhere.hdf5").rename(data)
    assert main([*command, "--episodes", "1"]) == 0
    assert "kept from the earlier" not in capsys.readouterr().out
    assert {a["episodes"] for a in json.loads((tables / "critics.json").read_text())["actors"]} == {1}

    final.unlink()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keep_final_state: true" in err and "3 record(s) skipped" in err


def test_a_bc_record_has_no_critic_and_is_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    out = tmp_path / "results" / "bc" / "hopper-tiny" / "kan-small" / "seed0.json"
    train_group(algorithm_config(data, "bc"), [0], [out], progress=False, keep_final_state=True)
    assert main(["critics", str(out.parents[2]), "--tables", str(tmp_path / "tables"), "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trains no critic; skipped" in err


@pytest.mark.parametrize("algo", ["td3bc", "iql"])
def test_the_critics_of_td3bc_and_iql_are_their_agents_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algo: str
) -> None:
    """The critics are rebuilt from the record (architecture, the algorithm's number of critics and discount) for
    every algorithm that has them, here TD3+BC's and IQL's with a KAN actor."""
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    outs = [tmp_path / "results" / algo / "hopper-tiny" / "kan-small" / f"seed{seed}.json" for seed in (0, 1)]
    train_group(
        algorithm_config(data, algo, steps=4, eval_every=4), [0, 1], outs, progress=False, keep_final_state=True
    )
    figures = ["--figures", str(tmp_path / "figures")]
    assert main(["critics", str(outs[0].parents[2]), "--tables", str(tmp_path / "tables"), *figures]) == 0
    capsys.readouterr()
    rows = json.loads((tmp_path / "tables" / "critics.json").read_text())["actors"]
    dataset = load_dataset(f"local:{data}")
    normalized = (dataset.transitions.observations - dataset.state_mean) / dataset.state_std
    ends = np.cumsum([59, 45, 79, 34])
    _, counted = discounted_returns(
        dataset.transitions.rewards, ends, dataset.transitions.dones[ends - 1] > 0, 0.99, 459
    )
    for member, row in enumerate(rows):
        q = group_critic_values(
            final_state_path(outs),
            outs[member],
            member,
            torch.as_tensor(normalized[counted], dtype=torch.float32),
            torch.as_tensor(dataset.transitions.actions[counted]),
        )
        assert row["q_data"] == pytest.approx(q.mean(), rel=1e-5) and row["data_steps"] == counted.sum()
