"""Grid files: YAML that names the architectures, datasets, seeds and settings of a whole study.

A grid file is flat; every key but the three lists has a default:

    name: smoke                      # results go to results/<name>/ (default: the file's name)
    description: one line
    baseline: mlp-small              # the architecture the report compares the others with (default: mlp)
    reports:                         # named reports of the grid's records (default: one of every architecture)
      main: {architectures: [mlp-small, kan-wide]}
      kans: {architectures: [kan-wide, kan-small], baseline: kan-wide}
      hopper: {architectures: [mlp-small, kan-wide], datasets: [local:hopper-random]}
      beside: {architectures: [mlp-small, mlp-big], with: [smoke-big]}   # smoke-big's mlp-big beside these
    architectures:                   # built-in names and/or inline definitions (architectures.yaml format)
      - mlp-small
      - kan-wide:
          actor: kan[8]
          critic: mlp[64,64]
          kan: {grid_range: [-2, 2]}
    datasets: [local:hopper-random]  # names with their source prefix, as `python -m bench run --dataset`
    seeds: [0, 1]
    steps: 200                       # training budget (a multiple of epoch_steps)
    epoch_steps: 100
    eval_every: 200                  # evaluation cadence (a multiple of epoch_steps)
    eval_episodes: 2
    checkpoint_every: 10             # epochs; does not change results
    device: auto                     # auto, cpu, cuda, cuda:N
    normalize_reward: false
    compile: false                   # torch.compile of the whole update (CUDA graphs on a GPU)
    seeds_per_process: 1             # seeds of one (dataset, architecture) trained side by side in one process
    keep_final_state: false          # leave each group's final state (<seeds>.final.pt) for a longer grid to extend
    extends: smoke-short             # start each group from this grid's final state of it, where there is one
    resources: {num_cpus: 1, num_gpus: 0}   # per process; fractions allowed (Ray packs processes onto a GPU)
    algo: cql                        # cql (default), td3bc, iql, bc, or a list of them: [td3bc, iql]
    cql: {cql_alpha: 10.0}           # CQLConfig overrides; td3bc: {...}, iql: {...} and bc: {...} for the others
    dataset_overrides:               # settings for the cells of some datasets only
      local:hopper-random: {normalize_reward: true}
    architecture_overrides:          # settings for the cells of some architectures only
      kan-wide: {policy_lr: 1e-4}

An override names `normalize_reward` or a setting of the grid's algorithm(s); with several algorithms it applies
to the cells of every algorithm that has that setting (`tau` is TD3+BC's and IQL's), and a setting prefixed with
an algorithm's name applies to that algorithm's cells only (`iql.tau: 0.001`, `iql.normalize_reward: true`). A
cell takes the grid-wide settings, then its dataset's and its architecture's overrides; a setting given by both
for one cell is refused (no precedence to guess).

`extends` names another grid in the same results folder whose only difference is a smaller budget (`steps`) and
which kept its final states: a group of cells whose final state it holds starts from it instead of step 0, and on
CPU writes the records it would write trained from scratch (`bench.train.train_group`); other groups train from
step 0. Neither key changes a result, so neither counts as a change of configuration.

A grid of several algorithms trains every (dataset, architecture, seed) cell under each of them; its records
go to results/<name>/<algorithm>/..., while a grid of one algorithm keeps results/<name>/<dataset>/... .

`reports` splits one grid's records into the questions they answer: `python -m bench report results/<name>`
writes each named report to tables/<report>/ and figures/<report>/ (its architectures, in that order, against
its baseline, else the grid's, on its datasets, else all of the grid's), and `--report NAME` writes one. A report's
`with` names other grids of the same results folder whose records it sets beside this grid's (`bench report
--with`): its architectures may then be theirs too, which the report checks against their records. Reports change
no record.

Every problem is reported as a BenchError naming the file, the line and the key, found through the node marks
of `yaml.compose`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import re
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.agents.bc import BCConfig
from bench.agents.cql import CQLConfig
from bench.agents.iql import IQLConfig
from bench.agents.registry import ALGORITHMS, DEFAULT_ALGORITHM, get_algorithm
from bench.agents.td3_bc import TD3BCConfig
from bench.data.loader import SOURCES
from bench.data.registry import get_dataset_spec
from bench.errors import BenchError, did_you_mean
from bench.nets.spec import Architecture, load_architectures

# The same parser as architecture files, so an inline definition accepts exactly the architectures.yaml format.
from bench.nets.spec import parse_architecture as parse_architecture_entry
from bench.train import RunConfig, non_finite_setting

KEYS: dict[str, str] = {
    "name": "the grid's name, also its results folder results/<name>/",
    "description": "free text",
    "baseline": "the architecture the report compares the others with (one of the grid's architectures)",
    "reports": "named reports, {report: {architectures: [...], baseline: NAME, datasets: [...], with: [GRID]}}",
    "architectures": "list of built-in architecture names or {name: {actor, critic, kan, description}}",
    "datasets": "list of dataset names with a source prefix (d4rl:, local:, minari:)",
    "seeds": "list of integer seeds",
    "steps": "gradient steps per cell",
    "epoch_steps": "gradient steps per epoch",
    "eval_every": "gradient steps between evaluations",
    "eval_episodes": "episodes per evaluation",
    "checkpoint_every": "epochs between checkpoints",
    "device": "auto, cpu, cuda or cuda:N",
    "normalize_reward": "true or false",
    "compile": "true or false: torch.compile of the whole update",
    "seeds_per_process": "seeds of one (dataset, architecture) trained side by side in one process",
    "keep_final_state": "true or false: leave each group's final state for a longer grid to extend",
    "extends": "the name of a grid with a smaller budget whose final states this grid's groups start from",
    "resources": "{num_cpus: N, num_gpus: N} per process",
    "algo": "the offline algorithm, cql (default), td3bc, iql or bc, or a list of them",
    "cql": "CQL settings to override, {name: value}",
    "td3bc": "TD3+BC settings to override, {name: value}",
    "iql": "IQL settings to override, {name: value}",
    "bc": "BC settings to override, {name: value}",
    "dataset_overrides": "settings for some datasets only, {dataset: {setting: value}}",
    "architecture_overrides": "settings for some architectures only, {architecture: {setting: value}}",
}
REQUIRED = ("architectures", "datasets", "seeds", "steps")
REPORT_KEYS = ("architectures", "baseline", "datasets", "with")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DEFAULTS = RunConfig(dataset="", arch="")
# What a per-dataset or per-architecture override may set: the run setting below and every setting of the grid's
# algorithms.
RUN_OVERRIDES = ("normalize_reward",)

Key = tuple[str | int, ...]


@dataclass(frozen=True)
class Resources:
    """What one cell asks of the machine; Ray schedules on it, the local launcher sets torch threads from it."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @property
    def threads(self) -> int:
        """torch threads for one cell: a fractional CPU share still needs one thread."""
        return max(1, int(self.num_cpus))


@dataclass(frozen=True)
class ReportSpec:
    """A named report of a grid's records: these architectures, in this order, against `baseline` (None: the
    grid's baseline), on these datasets, in this order (empty: every dataset of the grid), beside the records of the
    grids `with_grids` names."""

    architectures: tuple[str, ...]
    baseline: str | None = None
    datasets: tuple[str, ...] = ()
    # Other grids of the same results folder whose records the report sets beside this grid's (`with:`).
    with_grids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One (dataset, architecture, seed) run of a grid, under one algorithm."""

    dataset: str
    arch: str
    seed: int
    algo: str = DEFAULT_ALGORITHM

    def __str__(self) -> str:
        algo = "" if self.algo == DEFAULT_ALGORITHM else f"{get_algorithm(self.algo).label} "
        return f"{algo}{self.arch} on {self.dataset}, seed {self.seed}"


@dataclass(frozen=True)
class GridSpec:
    """A parsed, validated grid file."""

    name: str
    path: Path
    architectures: dict[str, Architecture]
    inline: frozenset[str]  # the architectures defined in the grid file, not built in
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    epoch_steps: int = _DEFAULTS.epoch_steps
    eval_every: int = _DEFAULTS.eval_every
    eval_episodes: int = _DEFAULTS.eval_episodes
    checkpoint_every: int = _DEFAULTS.checkpoint_every
    device: str = _DEFAULTS.device
    normalize_reward: bool = _DEFAULTS.normalize_reward
    compile: bool = _DEFAULTS.compile
    # Seeds side by side: the grid's seeds, in order, in groups of this size per (dataset, architecture); a
    # seed's record depends on its group (one stream of policy noise), so the size is part of the results.
    seeds_per_process: int = 1
    keep_final_state: bool = False
    extends: str | None = None  # a grid of the same results folder whose final states the groups start from
    resources: Resources = field(default_factory=Resources)
    algorithms: tuple[str, ...] = (DEFAULT_ALGORITHM,)
    cql: CQLConfig = field(default_factory=CQLConfig)
    td3bc: TD3BCConfig = field(default_factory=TD3BCConfig)
    iql: IQLConfig = field(default_factory=IQLConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    description: str = ""
    baseline: str | None = None  # the report's reference architecture; None: the report's default (mlp)
    reports: dict[str, ReportSpec] = field(default_factory=dict)
    # {dataset or architecture: {setting: value}}, settings by their grid file names (normalize_reward, policy_lr)
    dataset_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    architecture_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def seed_group(self, cell: Cell) -> tuple[int, ...]:
        """The seeds that train side by side with `cell`'s: its chunk of `seeds_per_process` of the grid's seeds."""
        n = self.seeds_per_process
        start = self.seeds.index(cell.seed) // n * n
        return self.seeds[start : start + n]

    def cells(
        self, architectures: Sequence[str] = (), datasets: Sequence[str] = (), first: Sequence[str] = ()
    ) -> list[Cell]:
        """Every cell, seed-major: a grid stopped half way holds whole seeds of every (algorithm, dataset,
        architecture). `architectures` and `datasets`, when given, keep the cells of those of the grid's only
        (`grid run --architectures`); `first` moves the cells of those architectures ahead of the others, both
        parts in the grid's order (`grid run --first`: the main comparison before the ablations, in one run)."""
        _check_selection(self, "architecture", architectures, list(self.architectures))
        _check_selection(self, "dataset", datasets, list(self.datasets))
        _check_selection(self, "architecture", first, list(self.architectures))
        cells = [
            Cell(d, a, s, algo)
            for s in self.seeds
            for algo in self.algorithms
            for d in self.datasets
            if not datasets or d in datasets
            for a in self.architectures
            if not architectures or a in architectures
        ]
        return sorted(cells, key=lambda cell: cell.arch not in first) if first else cells

    def overrides(self, cell: Cell) -> dict[str, Any]:
        """The settings the cell takes from its dataset's and its architecture's overrides (never both for one
        setting: `load_grid` refuses that, with the lines at fault); of the algorithms' settings, only those of
        the cell's algorithm."""
        by_dataset = scoped_settings(self.dataset_overrides.get(cell.dataset, {}), cell.algo)
        by_arch = scoped_settings(self.architecture_overrides.get(cell.arch, {}), cell.algo)
        both = sorted(by_dataset.keys() & by_arch.keys())
        if both:
            raise BenchError(f"{cell}: dataset_overrides and architecture_overrides both set {', '.join(both)}")
        return {**by_dataset, **by_arch}

    def record_overrides(self, cell: Cell) -> dict[str, Any]:
        """What the cell's record keeps of the overrides: the settings it took (`applied`) and the grid-wide
        values they replace (`replaced`), by the record's config keys (`cql.policy_lr`), and the grid's two maps,
        so a report tells a cell's intended settings from a mix of configurations."""
        applied: dict[str, Any] = {}
        replaced: dict[str, Any] = {}
        settings = getattr(self, cell.algo)
        for name, value in self.overrides(cell).items():
            key = name if name in RUN_OVERRIDES else f"{cell.algo}.{name}"
            applied[key] = value
            replaced[key] = getattr(self, name) if name in RUN_OVERRIDES else getattr(settings, name)
        return {
            "applied": applied,
            "replaced": replaced,
            "dataset_overrides": self.dataset_overrides,
            "architecture_overrides": self.architecture_overrides,
        }

    def run_config(self, cell: Cell, arch_file: Path | None = None) -> RunConfig:
        """The cell's RunConfig, its overrides applied; `arch_file` holds the inline architectures (unused for
        built-in ones)."""
        overrides = self.overrides(cell)
        run = {name: overrides.pop(name) for name in RUN_OVERRIDES if name in overrides}
        settings = getattr(self, cell.algo)
        return RunConfig(
            dataset=cell.dataset,
            arch=cell.arch,
            seed=cell.seed,
            steps=self.steps,
            epoch_steps=self.epoch_steps,
            eval_every=self.eval_every,
            eval_episodes=self.eval_episodes,
            checkpoint_every=self.checkpoint_every,
            device=self.device,
            normalize_reward=run.get("normalize_reward", self.normalize_reward),
            compile=self.compile,
            arch_file=str(arch_file) if arch_file is not None and cell.arch in self.inline else None,
            algo=cell.algo,
            **{cell.algo: dataclasses.replace(settings, **overrides) if overrides else settings},
        )

    def settings(self) -> dict[str, Any]:
        """The grid-wide configuration that changes results (a RunConfig minus the cell's identity), before
        overrides: the settings of each of the grid's algorithms, and `algorithms` unless the grid is CQL's
        alone (whose settings are those from before other algorithms existed)."""
        config = self.run_config(Cell("", "", 0, self.algorithms[0])).to_dict()
        for key in ("dataset", "arch", "seed", "arch_file", "checkpoint_every", "algo"):
            config.pop(key, None)
        for algo in self.algorithms:
            config[algo] = asdict(getattr(self, algo))
        if self.algorithms != (DEFAULT_ALGORITHM,):
            config["algorithms"] = list(self.algorithms)
        return config

    def resolved(self) -> dict[str, Any]:
        """The whole grid with every default and built-in definition spelled out (results/<name>/grid.yaml)."""
        data = {
            "name": self.name,
            "source": str(self.path),
            "description": self.description,
            **({} if self.baseline is None else {"baseline": self.baseline}),
            **({"reports": {name: report_entry(r) for name, r in self.reports.items()}} if self.reports else {}),
            "architectures": {name: architecture_entry(a) for name, a in self.architectures.items()},
            "inline_architectures": sorted(self.inline),
            **({} if self.algorithms == (DEFAULT_ALGORITHM,) else {"algorithms": list(self.algorithms)}),
            "datasets": list(self.datasets),
            "seeds": list(self.seeds),
            "seeds_per_process": self.seeds_per_process,
            **({"keep_final_state": True} if self.keep_final_state else {}),
            **({} if self.extends is None else {"extends": self.extends}),
            "settings": self.settings(),
            "dataset_overrides": self.dataset_overrides,
            "architecture_overrides": self.architecture_overrides,
            "checkpoint_every": self.checkpoint_every,
            "resources": asdict(self.resources),
        }
        return json.loads(json.dumps(data))  # tuples as lists, so YAML writes plain sequences


def report_entry(report: ReportSpec) -> dict[str, Any]:
    """A report as a grid file writes it."""
    entry: dict[str, Any] = {"architectures": list(report.architectures)}
    if report.baseline is not None:
        entry["baseline"] = report.baseline
    if report.datasets:
        entry["datasets"] = list(report.datasets)
    if report.with_grids:
        entry["with"] = list(report.with_grids)
    return entry


def setting_for(key: str, algo: str) -> str | None:
    """The setting an override key sets in the cells of `algo`: an unprefixed run setting or setting of `algo`,
    or the name after `algo.`; None when the key is another algorithm's."""
    prefix, dot, name = key.partition(".")
    if dot:
        return name if prefix == algo else None
    return key if key in RUN_OVERRIDES or key in typing.get_type_hints(get_algorithm(algo).config) else None


def scoped_settings(settings: dict[str, Any], algo: str) -> dict[str, Any]:
    """The overrides that apply to the cells of `algo`, by setting name (see `setting_for`)."""
    return {name: value for key, value in settings.items() if (name := setting_for(key, algo)) is not None}


def _check_selection(spec: GridSpec, kind: str, names: Sequence[str], known: list[str]) -> None:
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known, cutoff=0.5)
            raise BenchError(
                f"{kind} {name!r} is not in grid {spec.name!r} ({spec.path}); {hint}its {kind}s: {', '.join(known)}"
            )


def architecture_entry(arch: Architecture) -> dict[str, Any]:
    """An architecture in the architectures.yaml format, every KAN option explicit."""
    kan = asdict(arch.kan)
    kan["grid_range"] = list(kan["grid_range"])
    return {"actor": str(arch.actor), "critic": str(arch.critic), "kan": kan, "description": arch.description}


def dataset_slug(name: str) -> str:
    """A folder name for a dataset: 'd4rl:hopper-medium-v2' -> 'd4rl-hopper-medium-v2'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")


class _Document:
    """A YAML document's data plus the line of every mapping key and list item, for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BenchError(f"cannot read grid file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise BenchError(
                f"grid file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
            ) from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or exc
            raise BenchError(f"grid file {path}{where}: not valid YAML ({problem})") from None
        self.lines: dict[Key, int] = {}
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, key: Key) -> None:
        self.lines.setdefault(key, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                name = str(key_node.value)
                if name in seen:
                    raise self.error((*key, name), "appears twice in the same mapping; keep one", key_node)
                seen.add(name)
                self.lines[(*key, name)] = key_node.start_mark.line + 1
                self._index(value_node, (*key, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*key, i))

    def line(self, key: Key) -> int:
        while key and key not in self.lines:
            key = key[:-1]
        return self.lines.get(key, 1)

    def error(self, key: Key, message: str, node: yaml.Node | None = None) -> BenchError:
        line = node.start_mark.line + 1 if node is not None else self.line(key)
        return BenchError(f"grid file {self.path}, line {line}, key '{_dotted(key)}': {message}")


def _dotted(key: Key) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def load_grid(path: Path) -> GridSpec:
    """Parse and validate the grid file at `path`."""
    path = Path(path)
    doc = _Document(path)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), f"expected a mapping with keys {', '.join(REQUIRED)} (and optional settings)")
    for key in data:
        if str(key) not in KEYS:
            hint = did_you_mean(key, KEYS)
            raise doc.error((str(key),), f"unknown key; {hint}allowed: {', '.join(KEYS)}")
    for key in REQUIRED:
        if key not in data:
            raise doc.error((), f"missing key {key!r} ({KEYS[key]})")

    name = _string(doc, data, "name", default=path.stem)
    if not _SAFE_NAME.match(name):
        raise doc.error(("name",), f"{name!r} is not a folder name; use letters, digits, '.', '_' and '-'")
    device = _string(doc, data, "device", default=_DEFAULTS.device)
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise doc.error(("device",), f"{device!r}: use auto, cpu, cuda or cuda:N")
    architectures, inline = _architectures(doc, data["architectures"])
    datasets = _datasets(doc, data["datasets"])
    algorithms = _algorithms(doc, data)
    spec = GridSpec(
        name=name,
        path=path,
        description=_string(doc, data, "description", default=""),
        baseline=_baseline(doc, data, architectures),
        reports=_reports(
            doc, data.get("reports", {}), architectures, datasets, _baseline(doc, data, architectures), name
        ),
        architectures=architectures,
        inline=inline,
        datasets=datasets,
        seeds=_seeds(doc, data["seeds"]),
        steps=_integer(doc, data, "steps", _DEFAULTS.steps),
        epoch_steps=_integer(doc, data, "epoch_steps", _DEFAULTS.epoch_steps),
        eval_every=_integer(doc, data, "eval_every", _DEFAULTS.eval_every),
        eval_episodes=_integer(doc, data, "eval_episodes", _DEFAULTS.eval_episodes),
        checkpoint_every=_integer(doc, data, "checkpoint_every", _DEFAULTS.checkpoint_every),
        device=device,
        normalize_reward=_boolean(doc, data, "normalize_reward", _DEFAULTS.normalize_reward),
        compile=_boolean(doc, data, "compile", _DEFAULTS.compile),
        seeds_per_process=_integer(doc, data, "seeds_per_process", 1),
        keep_final_state=_boolean(doc, data, "keep_final_state", False),
        extends=_extends(doc, data, name),
        resources=_resources(doc, data.get("resources", {})),
        algorithms=algorithms,
        **{algo: _algorithm_settings(doc, algo, data.get(algo, {})) for algo in ALGORITHMS},
        dataset_overrides=_overrides(doc, data, "dataset_overrides", list(datasets), "dataset", algorithms),
        architecture_overrides=_overrides(
            doc, data, "architecture_overrides", list(architectures), "architecture", algorithms
        ),
    )
    _check_overrides(doc, spec)
    for key in ("steps", "eval_every"):
        if getattr(spec, key) % spec.epoch_steps:
            raise doc.error((key,), f"{getattr(spec, key)} is not a multiple of epoch_steps ({spec.epoch_steps})")
    try:  # RunConfig's own checks, in case they grow beyond the ones above
        spec.run_config(spec.cells()[0]).validate()
    except BenchError as exc:
        raise BenchError(f"grid file {path}: {exc}") from None
    return spec


def _baseline(doc: _Document, data: dict, architectures: dict[str, Architecture]) -> str | None:
    if "baseline" not in data:
        return None
    name = data["baseline"]
    if not isinstance(name, str) or name not in architectures:
        raise doc.error(
            ("baseline",), f"{_type_name(name)} is not one of the grid's architectures ({', '.join(architectures)})"
        )
    return name


def _reports(
    doc: _Document,
    value: Any,
    architectures: dict[str, Architecture],
    datasets: tuple[str, ...],
    grid_baseline: str | None,
    grid_name: str,
) -> dict[str, ReportSpec]:
    if not isinstance(value, dict):
        raise doc.error(("reports",), f"expected a mapping {KEYS['reports']}, got {_type_name(value)}")
    reports: dict[str, ReportSpec] = {}
    for name, entry in value.items():
        key: Key = ("reports", str(name))
        if not isinstance(name, str) or not _SAFE_NAME.match(name):
            raise doc.error(
                key, f"{name!r} is not a folder name (tables/<report>/); use letters, digits, '.', '_', '-'"
            )
        if not isinstance(entry, dict):
            raise doc.error(key, f"expected a mapping with keys {', '.join(REPORT_KEYS)}, got {_type_name(entry)}")
        for item in entry:
            if item not in REPORT_KEYS:
                raise doc.error(
                    (*key, str(item)),
                    f"unknown key; {did_you_mean(item, REPORT_KEYS)}allowed: {', '.join(REPORT_KEYS)}",
                )
        with_grids = _report_with(doc, key, entry.get("with"), grid_name)
        names = entry.get("architectures")
        if not isinstance(names, list) or not names:
            raise doc.error(
                (*key, "architectures"),
                f"expected a non-empty list of the grid's architectures, got {_type_name(names)}",
            )
        for i, arch in enumerate(names):
            # Another grid's architecture is checked against its records when the report is built.
            if not isinstance(arch, str) or (arch not in architectures and not with_grids):
                hint = did_you_mean(arch, architectures, cutoff=0.5) if isinstance(arch, str) else ""
                raise doc.error(
                    (*key, "architectures", i),
                    f"{_type_name(arch)} is not one of the grid's architectures; {hint}its architectures: "
                    f"{', '.join(architectures)}",
                )
        if len(set(names)) < len(names):
            raise doc.error((*key, "architectures"), "names an architecture twice; keep one")
        baseline = entry.get("baseline")
        if baseline is not None and baseline not in names:
            raise doc.error(
                (*key, "baseline"),
                f"{_type_name(baseline)} is not one of this report's architectures ({', '.join(names)})",
            )
        if baseline is None and grid_baseline is not None and grid_baseline not in names:
            raise doc.error(
                key,
                f"the grid's baseline {grid_baseline!r} is not among this report's architectures; "
                "add it, or give the report its own (baseline: NAME, one of its architectures)",
            )
        report_datasets = _report_datasets(doc, key, entry.get("datasets"), datasets)
        reports[name] = ReportSpec(tuple(names), baseline, report_datasets, with_grids)
    return reports


def _report_with(doc: _Document, key: Key, value: Any, grid_name: str) -> tuple[str, ...]:
    """A report's `with:`, a non-empty list of other grids' names; () when it names none."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise doc.error((*key, "with"), f"expected a non-empty list of other grids' names, got {_type_name(value)}")
    for i, other in enumerate(value):
        if not isinstance(other, str) or not _SAFE_NAME.match(other):
            raise doc.error((*key, "with", i), f"{other!r} is not a grid name; name a grid of the same results folder")
        if other == grid_name:
            raise doc.error((*key, "with", i), f"names this grid ({grid_name!r}); name other grids only")
    if len(set(value)) < len(value):
        raise doc.error((*key, "with"), "names a grid twice; keep one")
    return tuple(value)


def _report_datasets(doc: _Document, key: Key, value: Any, datasets: tuple[str, ...]) -> tuple[str, ...]:
    """A report's `datasets:`, a non-empty list of the grid's datasets; () when it names none (all of them)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise doc.error(
            (*key, "datasets"), f"expected a non-empty list of the grid's datasets, got {_type_name(value)}"
        )
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in datasets:
            hint = did_you_mean(name, datasets, cutoff=0.5) if isinstance(name, str) else ""
            raise doc.error(
                (*key, "datasets", i),
                f"{_type_name(name)} is not one of the grid's datasets; {hint}its datasets: {', '.join(datasets)}",
            )
    if len(set(value)) < len(value):
        raise doc.error((*key, "datasets"), "names a dataset twice; keep one")
    return tuple(value)


def _type_name(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _string(doc: _Document, data: dict, key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or (key == "name" and not value):
        raise doc.error((key,), f"expected a non-empty string, got {_type_name(value)}")
    return value.strip()


def _integer(doc: _Document, data: dict, key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise doc.error((key,), f"expected a positive integer, got {_type_name(value)}")
    return value


def _extends(doc: _Document, data: dict, name: str) -> str | None:
    """The grid whose final states this one's groups start from: a grid name other than its own, or None."""
    if "extends" not in data:
        return None
    extends = _string(doc, data, "extends", default="")
    if not _SAFE_NAME.match(extends):
        raise doc.error(("extends",), f"{extends!r} is not a grid name; name a grid of the same results folder")
    if extends == name:
        raise doc.error(("extends",), f"grid {name!r} cannot extend itself; name the grid with the smaller budget")
    return extends


def _boolean(doc: _Document, data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise doc.error((key,), f"expected true or false, got {_type_name(value)}")
    return value


def _non_empty_list(doc: _Document, value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise doc.error((key,), f"expected a list ({KEYS[key]}), got {_type_name(value)}")
    if not value:
        raise doc.error((key,), f"the list is empty; name at least one ({KEYS[key]})")
    return value


def _architectures(doc: _Document, value: Any) -> tuple[dict[str, Architecture], frozenset[str]]:
    builtin = load_architectures()
    architectures: dict[str, Architecture] = {}
    inline: set[str] = set()
    for i, item in enumerate(_non_empty_list(doc, value, "architectures")):
        key: Key = ("architectures", i)
        if isinstance(item, str):
            if item not in builtin:
                close = difflib.get_close_matches(item, list(builtin), n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise doc.error(
                    key,
                    f"unknown architecture {item!r}: {hint}built-ins: {', '.join(builtin)}; "
                    "or define it inline as {name: {actor: ..., critic: ...}}",
                )
            name, arch = item, builtin[item]
        elif isinstance(item, dict) and len(item) == 1:
            name, entry = next(iter(item.items()))
            name = str(name)
            key = (*key, name)
            if name in builtin:
                raise doc.error(key, f"{name!r} is a built-in architecture; give the inline one another name")
            try:
                arch = parse_architecture_entry(doc.path, name, entry)
            except BenchError as exc:
                raise doc.error(key, str(exc).split(": ", 1)[-1]) from None
            inline.add(name)
        else:
            raise doc.error(key, f"expected an architecture name or {{name: {{actor, critic}}}}, got {item!r}")
        if not _SAFE_NAME.match(name):
            raise doc.error(key, f"architecture name {name!r} cannot be a folder name; use letters, digits, . _ -")
        if name in architectures:
            raise doc.error(key, f"architecture {name!r} is listed twice")
        architectures[name] = arch
    return architectures, frozenset(inline)


def _datasets(doc: _Document, value: Any) -> tuple[str, ...]:
    names: list[str] = []
    slugs: dict[str, str] = {}
    for i, item in enumerate(_non_empty_list(doc, value, "datasets")):
        key: Key = ("datasets", i)
        if not isinstance(item, str) or not item.strip():
            raise doc.error(key, f"expected a dataset name such as d4rl:hopper-medium-v2, got {_type_name(item)}")
        name = item.strip()
        source, sep, rest = name.partition(":")
        if not sep or source not in SOURCES or not rest:
            raise doc.error(
                key,
                f"{name!r} needs a source prefix: d4rl:<name> (e.g. d4rl:hopper-medium-v2), "
                "local:<name> or local:<path>.hdf5, minari:<dataset id>",
            )
        if source == "d4rl":
            try:
                get_dataset_spec(rest)
            except BenchError as exc:
                raise doc.error(key, str(exc)) from None
        slug = dataset_slug(name)
        if slug in slugs:
            what = "is listed twice" if slugs[slug] == name else f"gets the same results folder as {slugs[slug]!r}"
            raise doc.error(key, f"dataset {name!r} {what}")
        slugs[slug] = name
        names.append(name)
    return tuple(names)


def _seeds(doc: _Document, value: Any) -> tuple[int, ...]:
    seeds: list[int] = []
    for i, item in enumerate(_non_empty_list(doc, value, "seeds")):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise doc.error(("seeds", i), f"expected a non-negative integer, got {_type_name(item)}")
        if item in seeds:
            raise doc.error(("seeds", i), f"seed {item} is listed twice")
        seeds.append(item)
    return tuple(seeds)


def _resources(doc: _Document, value: Any) -> Resources:
    if not isinstance(value, dict):
        raise doc.error(("resources",), f"expected a mapping {{num_cpus: N, num_gpus: N}}, got {_type_name(value)}")
    values: dict[str, float] = {}
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            raise doc.error(("resources", str(key)), f"unknown key; allowed: {', '.join(RESOURCE_KEYS)}")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise doc.error(("resources", key), f"expected a number >= 0 (fractions allowed), got {_type_name(amount)}")
        values[key] = float(amount)
    if values.get("num_cpus", 1.0) <= 0:
        raise doc.error(("resources", "num_cpus"), "a cell needs some CPU; use a number > 0 such as 1 or 0.5")
    return Resources(**values)


def _algorithms(doc: _Document, data: dict) -> tuple[str, ...]:
    """`algo`: one algorithm's name or a list of them (default cql); a settings map (`td3bc: {...}`) of an
    algorithm the grid does not train is refused, since it would change nothing."""
    value = data.get("algo", DEFAULT_ALGORITHM)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise doc.error(("algo",), f"the list is empty; name at least one of {', '.join(ALGORITHMS)}")
    names: list[str] = []
    for i, item in enumerate(items):
        key: Key = ("algo", i) if isinstance(value, list) else ("algo",)
        if not isinstance(item, str) or item not in ALGORITHMS:
            hint = did_you_mean(item, ALGORITHMS)
            raise doc.error(key, f"unknown algorithm {item!r}; {hint}use one of {', '.join(ALGORITHMS)}")
        if item in names:
            raise doc.error(key, f"algorithm {item!r} is listed twice")
        names.append(item)
    for algo in ALGORITHMS:
        if algo in data and algo not in names:
            raise doc.error(
                (algo,),
                f"settings of {algo}, which this grid does not train (algo: {', '.join(names)}); add it to algo",
            )
    return tuple(names)


def _algorithm_settings(doc: _Document, algo: str, value: Any) -> Any:
    """An algorithm's settings map (`cql: {...}`, `td3bc: {...}`) applied to its defaults."""
    algorithm = get_algorithm(algo)
    if not isinstance(value, dict):
        raise doc.error((algo,), f"expected a mapping of {algorithm.label} settings, got {_type_name(value)}")
    hints = typing.get_type_hints(algorithm.config)
    changes: dict[str, Any] = {}
    for key, setting in value.items():
        where: Key = (algo, str(key))
        if key not in hints:
            hint = did_you_mean(key, hints)
            raise doc.error(where, f"unknown {algorithm.label} setting; {hint}known: {', '.join(hints)}")
        changes[key] = _setting_value(doc, where, hints[key], setting)
    try:
        return dataclasses.replace(algorithm.config(), **changes)
    except ValueError as exc:
        raise doc.error((algo,), str(exc)) from None


def _setting_value(doc: _Document, where: Key, hint: Any, setting: Any) -> Any:
    """An algorithm setting's value checked against its type hint, ints and YAML's '3e-5' strings made floats."""
    allowed = typing.get_args(hint) or (hint,)
    if float in allowed and isinstance(setting, str):
        # YAML 1.1 reads 3e-5 (no dot) as a string.
        with contextlib.suppress(ValueError):
            setting = float(setting)
    if isinstance(setting, int) and not isinstance(setting, bool) and float in allowed and int not in allowed:
        setting = float(setting)
    if not isinstance(setting, allowed) or (isinstance(setting, bool) and bool not in allowed):
        raise doc.error(where, f"takes {hint}, got {_type_name(setting)}")
    if isinstance(setting, float) and not math.isfinite(setting):
        raise doc.error(where, non_finite_setting(setting))
    return setting


def _overrides(
    doc: _Document, data: dict, key: str, names: list[str], what: str, algorithms: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """`dataset_overrides` or `architecture_overrides`: {name of one of the grid's `what`: {setting: value}}, a
    setting being `normalize_reward` or a setting of one of `algorithms`, either for every algorithm that has it or
    prefixed with one algorithm's name (`iql.tau`) for that algorithm's cells only."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise doc.error((key,), f"expected a mapping {{{what}: {{setting: value}}}}, got {_type_name(value)}")
    hints: dict[str, Any] = {}
    for algo in algorithms:
        for name, hint in typing.get_type_hints(get_algorithm(algo).config).items():
            hints.setdefault(name, hint)
            hints[f"{algo}.{name}"] = hint
        hints.update({f"{algo}.{name}": bool for name in RUN_OVERRIDES})
    allowed = [*RUN_OVERRIDES, *hints]
    shown = [name for name in allowed if "." not in name]
    overrides: dict[str, dict[str, Any]] = {}
    for name, settings in value.items():
        name = str(name)
        if name not in names:
            hint = did_you_mean(name, names, cutoff=0.5)
            listed = ", ".join(names)
            raise doc.error((key, name), f"{name!r} is not one of the grid's {what}s; {hint}they are: {listed}")
        if not isinstance(settings, dict) or not settings:
            raise doc.error((key, name), f"expected a mapping {{setting: value}}, got {_type_name(settings)}")
        checked: dict[str, Any] = {}
        for setting, setting_value in settings.items():
            where: Key = (key, name, str(setting))
            if setting not in allowed:
                hint = did_you_mean(setting, allowed)
                raise doc.error(
                    where,
                    f"unknown setting; {hint}an override sets one of: {', '.join(shown)} (for one algorithm's cells "
                    f"only with its prefix: {algorithms[0]}.{shown[-1]})",
                )
            checked[setting] = (
                _override_boolean(doc, where, setting_value)
                if setting.rpartition(".")[2] in RUN_OVERRIDES
                else _setting_value(doc, where, hints[setting], setting_value)
            )
        for algo in algorithms:
            names_for_algo = [n for k in checked if (n := setting_for(k, algo)) is not None]
            twice = sorted({n for n in names_for_algo if names_for_algo.count(n) > 1})
            if twice:
                raise doc.error(
                    (key, name), f"sets {twice[0]} twice for the {algo} cells (with and without the prefix {algo}.)"
                )
        overrides[name] = checked
    return overrides


def _override_boolean(doc: _Document, where: Key, value: Any) -> bool:
    if not isinstance(value, bool):
        raise doc.error(where, f"expected true or false, got {_type_name(value)}")
    return value


def _check_overrides(doc: _Document, spec: GridSpec) -> None:
    """Refuse a setting that a dataset and an architecture both override (which would win is a guess), and
    override values an algorithm's settings reject in some cell."""
    for dataset, by_dataset in spec.dataset_overrides.items():
        for arch, by_arch in spec.architecture_overrides.items():
            for algo in spec.algorithms:
                from_dataset = {setting_for(raw, algo): raw for raw in by_dataset}
                both = [raw for raw in by_arch if setting_for(raw, algo) in from_dataset.keys() - {None}]
                if both:
                    setting = setting_for(both[0], algo)
                    in_dataset = from_dataset[setting]
                    raise doc.error(
                        ("architecture_overrides", arch, both[0]),
                        f"dataset_overrides also sets {setting} for {dataset} "
                        f"(line {doc.line(('dataset_overrides', dataset, in_dataset))}), so the cells of {arch} on "
                        f"{dataset} would take two values; set it in one of the two places",
                    )
    for key, overrides in (
        ("dataset_overrides", spec.dataset_overrides),
        ("architecture_overrides", spec.architecture_overrides),
    ):
        for name, settings in overrides.items():
            for algo in spec.algorithms:
                own = typing.get_type_hints(get_algorithm(algo).config)
                changes = {k: v for k, v in scoped_settings(settings, algo).items() if k in own}
                try:
                    dataclasses.replace(getattr(spec, algo), **changes)
                except ValueError as exc:
                    raise doc.error((key, name), str(exc)) from None
    for dataset in spec.dataset_overrides:
        for arch in spec.architecture_overrides:
            for algo in spec.algorithms:
                try:
                    spec.run_config(Cell(dataset, arch, 0, algo))
                except ValueError as exc:
                    where = ("architecture_overrides", arch)
                    raise doc.error(where, f"{exc} (with the overrides of {dataset})") from None
