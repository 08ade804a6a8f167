"""Table 10: what the critics expect where the actors go, against what the actors get there.

Table 9 shows Q-learning actors taking their episodes out of their data; this asks the usual account of why:
do their critics rate the states and actions the actors reach too high, so that the actor climbs values that
are not there? For every finished record of an algorithm with critics (CQL, TD3+BC, IQL) whose group kept its
final state (`keep_final_state: true` in its grid file: the record keeps the actor only), the critics of the
record's seed are read from that state and compared, at every counted step, with the discounted return that
followed:

- its own episodes: the record's evaluation episodes replayed with the actor's deterministic action (as Table 9
  replays them); the critics' value of each state and the action taken, the minimum over the critics (the
  value CQL's actor climbs; TD3+BC's climbs the first critic), against the discounted sum of the rewards the
  episode collected from that step on;
- upside down: the same over the steps with the body pitched beyond 90 degrees (`EnvSpec.pitch_index`);
- the data: the critics' value of every transition's state and action against the discounted return of the
  data's episode from there. That return is the behaviour policy's, not the actor's, so it is a reference for
  the critics' scale where they were trained rather than a test of them.

Rewards are those training saw (reward-range normalized where the run normalized them, `normalize_reward`),
discounted by the algorithm's `discount`. A step counts only where the return after it is known: in an episode
that ended at a terminal state, or at least `horizon` steps before the episode's last step, where discount **
horizon < 1%, so the unseen remainder of a time-limited episode weighs less than 1% of the return.

Outputs: `table10_critics.md` and `.tex` (mean ± std over seeds per dataset and architecture), `critics.json`
with every number unrounded and the SHA-256 of the actor file, of the final state and of the data, and Figure 10
(`critics.pdf`, `.png`: each actor's mean Q against the mean return, on its own steps and on the data's). A later run
keeps an actor's numbers while the three digests, its episodes and their seed are unchanged (unless
`recompute`), carries the entries of actors that `architectures` or `datasets` leave out, and is written after
every actor, so a run stopped halfway resumes where it stopped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.lines import Line2D
from scipy.signal import lfilter

from bench.actions import cells_of, incomplete_notes, narrowed_notes, narrowing, write_entries
from bench.agents.registry import get_algorithm
from bench.coverage import closing_lines, normalized_as
from bench.data.download import file_sha256
from bench.data.qlearning import return_range
from bench.data.registry import get_env_spec
from bench.deploy import (
    ActorRecords,
    DatasetStates,
    actor_digests,
    dataclass_from,
    earlier_or_nothing,
    read_earlier,
    record_dataset,
    select_actor_records,
    torch_policy,
)
from bench.errors import BenchError
from bench.evaluate import EpisodeStep, evaluate_policy
from bench.fileio import atomic_save_figure
from bench.nets.heads import EnsembleCritic
from bench.nets.kan import KANOptions
from bench.nets.spec import parse_network_spec
from bench.report.figures import colors, new_figure
from bench.report.records import display_name, record_algorithm
from bench.report.tables import MISSING, Table, values_mean_std, write_table
from bench.train import final_state_path, load_trained_actor

TABLE_STEM = "table10_critics"
FIGURE_STEM = "critics"
JSON_NAME = "critics.json"
UNSEEN_WEIGHT = 0.01  # a time-limited episode's step counts when the unseen rest weighs less than this
CRITIC_CHUNK = 16_384  # transitions per critic call
METHOD = (
    "the critics of the record's seed from its group's final state: min over the critics of Q(state, action) at "
    "every counted step of the actor's evaluation episodes (deterministic actions, the record's episode seeds) "
    "and of the data's transitions, against the discounted return that followed (rewards as in training); a step "
    "counts in an episode that ended at a terminal state or at least the horizon before its end"
)


@dataclass(frozen=True)
class ActorCritics:
    """One trained actor's critics: their values against the returns, on its own steps and on the data's."""

    record: str
    dataset: str
    dataset_name: str
    arch: str
    seed: int
    episodes: int
    eval_seed: int  # sub-environment i of the episodes was reset with eval_seed + i
    score: float  # mean normalized score of these episodes
    steps: int  # counted steps of the episodes
    q: float  # mean critic value over them
    returns: float  # mean discounted return that followed
    upside_down_steps: int  # of the counted steps, those with the body pitched beyond 90 degrees
    q_upside_down: float | None  # the same means over those (None without any)
    returns_upside_down: float | None
    data_steps: int  # counted transitions of the data
    q_data: float
    returns_data: float
    discount: float
    horizon: int
    actor_sha256: str = ""  # of the actor file, the group's final state and the data the numbers came from
    state_sha256: str = ""
    dataset_sha256: str = ""
    kept: bool = field(default=False, compare=False)  # taken from an earlier critics.json, not written to it


@dataclass(frozen=True)
class DatasetCritics:
    """What the table's notes name a dataset by."""

    dataset: str
    dataset_name: str


@dataclass
class CriticsSummary:
    """What `critics_grid` measured and wrote."""

    results_dir: Path
    actors: list[ActorCritics]
    skipped: list[str]
    written: list[Path]

    def format(self) -> str:
        kept = sum(a.kept for a in self.actors)
        lines = [
            f"critics of {len(self.actors)} trained actor(s) of {self.results_dir} against the returns"
            + (f" ({kept} kept from the earlier {JSON_NAME}, unchanged)" if kept else "")
        ]
        for (_, arch), group in cells_of(self.actors).items():
            lines.append(
                f"{group[0].dataset_name} {arch}: Q {np.mean([a.q for a in group]):.1f} against a return of "
                f"{np.mean([a.returns for a in group]):.1f} on its own steps, Q "
                f"{np.mean([a.q_data for a in group]):.1f} against {np.mean([a.returns_data for a in group]):.1f} "
                f"on the data's (n={len(group)})"
            )
        return "\n".join(lines + closing_lines(self.skipped, self.written))


def return_horizon(discount: float) -> int:
    """The fewest steps after which the rest of a return weighs less than UNSEEN_WEIGHT: discount**h < 1%."""
    if not 0.0 < discount < 1.0:
        raise BenchError(f"discount {discount} is not between 0 and 1; a return horizon needs one that is")
    return math.floor(math.log(UNSEEN_WEIGHT) / math.log(discount)) + 1


def discounted_returns(
    rewards: np.ndarray, ends: np.ndarray, terminal: np.ndarray, discount: float, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per step of episodes laid end to end (episode k ends before `ends[k]`; `terminal[k]`: it ended at a
    terminal state), the discounted sum of its rewards from there to the episode's end, and whether the step
    counts: every step of a terminal episode, else those at least `horizon` steps before the episode's end."""
    returns = np.empty(len(rewards), dtype=np.float64)
    counted = np.zeros(len(rewards), dtype=bool)
    start = 0
    for end, ended in zip(ends, terminal, strict=True):
        piece = np.asarray(rewards[start:end], dtype=np.float64)
        returns[start:end] = lfilter([1.0], [1.0, -discount], piece[::-1])[::-1]
        counted[start:end] = True if ended else np.arange(end - start) <= (end - start) - horizon
        start = end
    return returns, counted


def seed_critics(
    final_state: dict[str, Any], record: dict[str, Any], obs_dim: int, act_dim: int, num_critics: int, member: int
) -> EnsembleCritic:
    """Seed `member`'s critics alone, cut from its group's final state, so that evaluating them costs a seed's
    arithmetic, not the group's. The group's ensemble is critic-major (critic c of seed p is member c * P + p), so
    seed p's critics are members p, P + p, ...; a tensor without the member dimension is shared and copied."""
    arch = record["architecture"]
    population = int(final_state["agent"].get("population", 1))
    critic = EnsembleCritic(
        obs_dim, act_dim, parse_network_spec(arch["critic"]), KANOptions(**arch["kan"]), num_critics=num_critics
    )
    members = torch.arange(num_critics) * population + member
    own = critic.state_dict()
    group = final_state["agent"]["critic"]
    if set(group) != set(own):
        raise BenchError(f"its critics do not match the record's critic {arch['critic']!r}")
    sliced = {}
    for key, value in group.items():
        if value.shape == own[key].shape:
            sliced[key] = value
        elif value.shape[:1] == (num_critics * population,) and value.shape[1:] == own[key].shape[1:]:
            sliced[key] = value[members]
        else:
            raise BenchError(
                f"its critic tensor {key} has shape {tuple(value.shape)}, not that of "
                f"{population} seed(s) of {num_critics} critics {arch['critic']!r}"
            )
    critic.load_state_dict(sliced)
    return critic.eval()


def critic_values(critic: EnsembleCritic, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """min over the critics of Q(state, action), states normalized as in training, in chunks of CRITIC_CHUNK."""
    values = np.empty(len(states), dtype=np.float64)
    with torch.inference_mode():
        for i in range(0, len(states), CRITIC_CHUNK):
            obs = torch.as_tensor(np.ascontiguousarray(states[i : i + CRITIC_CHUNK], dtype=np.float32))
            act = torch.as_tensor(np.ascontiguousarray(actions[i : i + CRITIC_CHUNK], dtype=np.float32))
            values[i : i + len(obs)] = critic(obs, act).min(dim=0).values.double().numpy()
    return values


@dataclass(frozen=True)
class Episodes:
    """Episodes laid end to end: raw states, applied actions and rewards per step, where each episode ends
    (the index after its last step) and whether it ended at a terminal state."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    ends: np.ndarray
    terminal: np.ndarray
    score: float


def actor_episodes(actor: torch.nn.Module, env: str, data: DatasetStates, episodes: int, seed: int) -> Episodes:
    """The actor's `episodes` evaluation episodes seeded from `seed` (its inputs normalized as `data`'s), every
    step of each."""
    steps: list[EpisodeStep] = []
    result = evaluate_policy(
        env,
        torch_policy(actor),
        episodes=episodes,
        seed=seed,
        state_mean=data.state_mean,
        state_std=data.state_std,
        on_step=steps.append,
    )
    episode = np.concatenate([step.episodes for step in steps])
    order = np.argsort(episode, kind="stable")  # steps of episode 0 first, each in time order
    lengths = np.bincount(episode, minlength=episodes)
    terminated = np.concatenate([step.terminated for step in steps])[order]
    ends = np.cumsum(lengths)
    return Episodes(
        states=np.concatenate([step.states for step in steps])[order],
        actions=np.concatenate([step.actions for step in steps])[order],
        rewards=np.concatenate([step.rewards for step in steps])[order].astype(np.float64),
        ends=ends,
        terminal=terminated[ends - 1].astype(bool),
        score=float(np.mean(result.normalized_scores)),
    )


def reward_factor(record: dict[str, Any], data: DatasetStates, max_episode_steps: int) -> float:
    """What training multiplied the rewards by: CORL's reward-range normalization where the run normalized
    them (`normalize_reward`), else 1."""
    if not record["config"].get("normalize_reward", False):
        return 1.0
    low, high = return_range(data.rewards, data.dones, max_episode_steps)
    return max_episode_steps / (high - low)


def earlier_results(path: Path) -> dict[str, ActorCritics]:
    """The actor entries of an earlier critics.json at `path`, by record path."""

    def parse(document: dict[str, Any]) -> list[ActorCritics]:
        return [dataclass_from(ActorCritics, a) for a in document["actors"]]

    read = read_earlier(path, parse, f"a {JSON_NAME}", "measure every actor again")
    return {} if read is None else {a.record: a for a in read}


def with_final_states(selection: ActorRecords) -> tuple[dict[Path, Path], list[str]]:
    """The chosen records whose group's final state is kept, with its path, and a note per record left out."""
    states, skipped = {}, []
    for path in selection.chosen:
        record = selection.records[path]
        algorithm = record_algorithm(record)
        if algorithm == "bc":
            skipped.append(f"{path}: {get_algorithm(algorithm).label} trains no critic; skipped")
            continue
        seeds = (record.get("group") or {}).get("seeds") or [record["cell"]["seed"]]
        final = final_state_path([path.with_name(f"seed{seed}.json") for seed in seeds])
        if final.exists():
            states[path] = final
        else:
            skipped.append(
                f"{path}: no final state {final.name} beside it (the critics are kept only by grids with "
                "keep_final_state: true); skipped"
            )
    return states, skipped


def critics_grid(
    results_dir: Path,
    tables_dir: Path,
    *,
    architectures: Sequence[str] = (),
    datasets: Sequence[str] = (),
    figures_dir: Path | None = None,
    episodes: int | None = None,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    recompute: bool = False,
    progress: Callable[[str], None] | None = None,
) -> CriticsSummary:
    """Measure the critics of every trained actor under `results_dir` whose group kept its final state (of
    `architectures` and `datasets` only, when given) on its record's evaluation episodes (`episodes` of them,
    when given) and on its data; write Table 10 and critics.json into `tables_dir` and, when `figures_dir` is
    given, Figure 10 there, keeping and carrying earlier entries as the module docstring says. `progress` gets one
    line per actor (default: stderr)."""
    if episodes is not None and episodes < 1:
        raise BenchError(f"--episodes must be at least 1, got {episodes}")
    results_dir, tables_dir = Path(results_dir), Path(tables_dir)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    selection = select_actor_records(results_dir, architectures, datasets)
    final_states, skipped = with_final_states(selection)
    skipped = selection.skipped + skipped
    if not final_states:
        raise BenchError(
            f"no trained actor under {results_dir} has its group's final state (seed<k>+...final.pt) beside its "
            "record: the critics are not in the records, so train the grid with keep_final_state: true"
            + (f"; {len(skipped)} record(s) skipped: {skipped[0]}" if skipped else "")
        )
    records = selection.records
    earlier = earlier_or_nothing(lambda: earlier_results(tables_dir / JSON_NAME), {}, recompute)
    kept_actors = {} if recompute else earlier

    def save(actors: list[ActorCritics], dataset_rows: dict[str, DatasetCritics]) -> None:
        write_entries(tables_dir / JSON_NAME, results_dir, records, METHOD, actors, dataset_rows, earlier, {})

    loaded: dict[tuple[str, bool], DatasetStates] = {}
    dataset_rows: dict[str, DatasetCritics] = {}
    actors: list[ActorCritics] = []
    for path, final in final_states.items():
        record = records[path]
        cell = record["cell"]
        count = episodes or int(record["evaluation"]["episodes"])
        eval_seed = int(record["evaluation"]["seed"])
        actor_digest, data_digest = actor_digests(path, record)
        state_digest = file_sha256(final)
        name = display_name(cell["dataset"], record["dataset"].get("source", ""))
        dataset_rows.setdefault(cell["dataset"], DatasetCritics(cell["dataset"], name))
        previous = kept_actors.get(str(path))
        if previous is not None and (
            previous.actor_sha256,
            previous.state_sha256,
            previous.dataset_sha256,
            previous.episodes,
            previous.eval_seed,
        ) == (actor_digest, state_digest, data_digest, count, eval_seed):
            entry = replace(previous, arch=selection.labels[path], kept=True)
        else:
            entry = measure_actor(path, final, count, eval_seed, loaded, cache_dir, local_dir)
            entry = replace(
                entry,
                dataset_name=name,
                arch=selection.labels[path],
                actor_sha256=actor_digest,
                state_sha256=state_digest,
            )
        actors.append(entry)
        if not entry.kept:
            save(actors, dataset_rows)  # an interrupted run keeps what it measured: a rerun takes it from here
        say(
            f"{entry.dataset_name} {entry.arch} seed {entry.seed}: score {entry.score:.1f}, Q {entry.q:.1f} against "
            f"a return of {entry.returns:.1f} on {entry.steps:,} of its steps, Q {entry.q_data:.1f} against "
            f"{entry.returns_data:.1f} on the data" + (f" (kept from the earlier {JSON_NAME})" if entry.kept else "")
        )

    written = write_table(
        critics_table(actors, dataset_rows, narrowing(selection, architectures, datasets), selection), tables_dir
    )
    save(actors, dataset_rows)
    written.append(tables_dir / JSON_NAME)
    if figures_dir is not None:
        written += critics_figure(actors, dataset_rows, figures_dir)
    return CriticsSummary(results_dir, actors, skipped, written)


def measure_actor(
    path: Path,
    final: Path,
    episodes: int,
    eval_seed: int,
    loaded: dict[tuple[str, bool], DatasetStates],
    cache_dir: Path | None,
    local_dir: Path | None,
) -> ActorCritics:
    """One actor's entry (named by its cell; the caller sets the table's names and the actor's and state's
    digests, which it has computed already): its
    critics from the final state `final` on its episodes and on its data."""
    actor, record = load_trained_actor(path)
    data = record_dataset(path, record, loaded, cache_dir, local_dir)
    env = get_env_spec(record["dataset"]["env"])
    algorithm = get_algorithm(record_algorithm(record))
    settings = algorithm.config(**record["config"].get(algorithm.name, {}))
    try:
        state = torch.load(final, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn copy, a foreign file: whatever torch raises, the advice is the same
        raise BenchError(f"final state {final} cannot be read ({type(exc).__name__}); train its group again") from None
    if state.get("dataset_sha256", data.sha256) != data.sha256:
        raise BenchError(f"final state {final} was trained on other data than {record['cell']['dataset']} holds now")
    seeds = (record.get("group") or {}).get("seeds") or [record["cell"]["seed"]]
    member = seeds.index(record["cell"]["seed"])
    saved = state.get("records") or []
    if member >= len(saved) or saved[member].get("steps_done") != record["steps_done"]:
        raise BenchError(
            f"final state {final} is not the end of {path} (its step differs from the record's "
            f"{record['steps_done']:,}); train the group again with keep_final_state: true"
        )
    try:
        critic = seed_critics(state, record, env.obs_dim, env.act_dim, settings.num_critics, member)
    except BenchError as exc:
        raise BenchError(f"final state {final}: {exc}; train its group again") from None
    discount = float(settings.discount)
    horizon = return_horizon(discount)
    factor = reward_factor(record, data, env.max_episode_steps)

    run = actor_episodes(actor, env.name, data, episodes, eval_seed)
    returns, counted = discounted_returns(run.rewards * factor, run.ends, run.terminal, discount, horizon)
    q = critic_values(critic, normalized_as(run.states, data)[counted], run.actions[counted])
    flipped = np.abs(run.states[counted, env.pitch_index]) > math.pi / 2

    data_returns, data_counted = discounted_returns(
        data.rewards * factor, data.episode_ends, data.dones[data.episode_ends - 1] > 0, discount, horizon
    )
    q_data = critic_values(critic, data.states[data_counted], data.actions[data_counted])

    def mean_or_none(values: np.ndarray) -> float | None:
        return float(np.mean(values)) if len(values) else None

    return ActorCritics(
        record=str(path),
        dataset=record["cell"]["dataset"],
        dataset_name=record["cell"]["dataset"],
        arch=record["cell"]["arch"],
        seed=int(record["cell"]["seed"]),
        episodes=episodes,
        eval_seed=eval_seed,
        score=run.score,
        steps=int(counted.sum()),
        q=float(np.mean(q)),
        returns=float(np.mean(returns[counted])),
        upside_down_steps=int(flipped.sum()),
        q_upside_down=mean_or_none(q[flipped]),
        returns_upside_down=mean_or_none(returns[counted][flipped]),
        data_steps=int(data_counted.sum()),
        q_data=float(np.mean(q_data)),
        returns_data=float(np.mean(data_returns[data_counted])),
        discount=discount,
        horizon=horizon,
        dataset_sha256=data.sha256,
    )


def critics_table(
    actors: list[ActorCritics],
    datasets: dict[str, DatasetCritics],
    narrowed: Sequence[str] = (),
    selection: ActorRecords | None = None,
) -> Table:
    """Table 10: per dataset and architecture, the critics' mean value against the mean discounted return on the
    actors' own steps, on those upside down and on the data's transitions, mean ± std over seeds; `narrowed`: the
    options that left some of the folder's actors out; `selection`: the records chosen, whose grid file's cells
    the notes name when the table lacks them."""
    table = Table(
        stem=TABLE_STEM,
        number=10,
        title="What the critics expect where the actors go",
        caption=(
            "The critics of each trained actor (the minimum over its critics, from its group's final state) "
            "against the discounted return that followed, on the steps of the actor's own evaluation episodes "
            "(deterministic actions, the record's episode seeds), on those of them with the body upside down, "
            "and on the data's transitions (the behaviour policy's returns: the critics' scale where they were "
            "trained). Q above the return where the actor goes, and not on the data, is a critic overrating "
            "what the data does not hold. Means over counted steps, then mean ± sample standard deviation over "
            "seeds."
        ),
        header=[
            "Dataset",
            "Architecture",
            "Seeds",
            "Q, own steps",
            "Return, own steps",
            "Q, upside down",
            "Return, upside down",
            "Q, data",
            "Return, data",
            "Score",
        ],
        align="llrrrrrrrr",
    )
    previous = None
    cells = cells_of(actors)
    for (dataset, arch), group in cells.items():
        flipped = [a for a in group if a.q_upside_down is not None]
        table.add_row(
            [
                datasets[dataset].dataset_name if dataset != previous else "",
                arch,
                str(len(group)),
                values_mean_std([a.q for a in group], 1),
                values_mean_std([a.returns for a in group], 1),
                values_mean_std([a.q_upside_down for a in flipped], 1) if flipped else MISSING,
                values_mean_std([a.returns_upside_down for a in flipped], 1) if flipped else MISSING,
                values_mean_std([a.q_data for a in group], 1),
                values_mean_std([a.returns_data for a in group], 1),
                values_mean_std([a.score for a in group], 1),
            ],
            rule_before=dataset != previous and previous is not None,
        )
        previous = dataset
    discounts = sorted({(a.discount, a.horizon) for a in actors})
    table.notes = [
        f"Discount {d:g}: a step of an episode cut by its time limit counts when at least {h} steps come after it "
        "(the rest would weigh under 1% of its return); every step of an episode that ended by falling counts."
        for d, h in discounts
    ]
    some = [
        f"{datasets[dataset].dataset_name} {arch} ({sum(a.q_upside_down is not None for a in group)} of {len(group)})"
        for (dataset, arch), group in cells.items()
        if 0 < sum(a.q_upside_down is not None for a in group) < len(group)
    ]
    if some:
        table.notes.append(
            f"Upside-down columns over the seeds with counted steps upside down only: {'; '.join(some)}."
        )
    table.notes += incomplete_notes(cells, datasets, selection) + narrowed_notes(narrowed)
    return table


def critics_figure(actors: list[ActorCritics], datasets: dict[str, DatasetCritics], directory: Path) -> list[Path]:
    """Figure 10 (`critics.{pdf,png}` in `directory`): per dataset, each actor's mean critic value against the
    mean discounted return that followed, a filled marker for its own steps and a hollow one for the data's, beside
    the line where the two are equal: a filled marker far above the line, with the hollow one near it, is a critic
    that overrates where its actor goes."""
    cells = cells_of(actors)
    archs = list(dict.fromkeys(arch for _, arch in cells))
    palette = colors(archs)
    names = list(dict.fromkeys(dataset for dataset, _ in cells))
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = new_figure(max(3.4 * columns, 4.4) + 2.8, 2.9 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, dataset in zip(axes.flat, names, strict=False):
        shown = [a for a in actors if a.dataset == dataset]
        values = [v for a in shown for v in (a.q, a.returns, a.q_data, a.returns_data)]
        low, high = min(values), max(values)
        ax.plot([low, high], [low, high], color="0.5", linestyle=":", linewidth=1)
        for arch in archs:
            group = cells.get((dataset, arch), [])
            if group:
                color = [palette[arch]]
                ax.scatter([a.returns for a in group], [a.q for a in group], s=28, color=color)
                ax.scatter([a.returns_data for a in group], [a.q_data for a in group], s=28, facecolors="none",
                           edgecolors=color)  # fmt: skip
        ax.set_title(datasets[dataset].dataset_name, fontsize="medium")
        ax.set_xlabel("discounted return that followed")
        ax.set_ylabel("critics' Q")
    for ax in list(axes.flat)[len(names) :]:
        ax.set_axis_off()
    handles = [Line2D([], [], marker="o", linestyle="", color=palette[arch], label=arch) for arch in archs]
    handles += [
        Line2D([], [], marker="o", linestyle="", color="black", label="on the actor's own steps"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black", label="on the data"),
        Line2D([], [], color="0.5", linestyle=":", linewidth=1, label="Q equal to the return"),
    ]
    figure.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return atomic_save_figure(figure, Path(directory), FIGURE_STEM)
