"""Table 4, deployment: what each trained actor costs to ship and to run, and what export and int8 change.

For every finished record of a results folder whose final actor is kept beside it (`<record>.actor.pt`):

1. Deployment form (`DeployedActor`): the deterministic action tanh(mean) * max_action only, weights frozen
   into constants. MLP layers become `x @ W + b` and KAN layers use their combined weight [w_b; w_s * c],
   computed once, with the B-spline features in plain torch ops (`spline_features_plain`) instead of the
   training path's custom autograd function. Other bodies (RBF, plug-ins) are exported as they are. The model
   maps states normalized as in training to actions; the normalization stays outside, as in evaluation, and
   `<record>.inputs.json` beside the .onnx files gives its mean and std.
2. Export: `torch.onnx.export` with torch's default exporter (`dynamo=True`, built on torch.export and
   onnxscript), a dynamic batch dim, weights inside the file; per-node debug metadata (stack traces) is removed,
   since it is not part of the model and would dominate the size of a small one.
3. Check: the float32 ONNX model's actions on every state of the record's dataset must be within 1e-5 of the
   PyTorch actor's. An actor whose own float32 actions move further than that from its float64 ones (a
   LayerNorm over a few nearly equal hidden units amplifies rounding, as in small RBF actors) cannot show a
   correct export that way; for it the deployment form is also exported in float64, whose actions must be
   within 1e-5 of the float64 PyTorch actor's (`float64_export_error`); not to the last bit, since ONNX stores
   LayerNormalization's epsilon as a float32 attribute (1e-5 becomes 1e-5 - 2.5e-13: 8e-9 on nearly equal
   inputs, which such an actor amplifies to about 1e-6). BenchError otherwise. The largest
   differences of the float32 and int8 models, the actor's own float32 rounding (its float32 against its
   float64 actions) and the float64 export's difference are recorded.
4. int8: `onnxruntime.quantization.quantize_dynamic` (MatMul weights int8 per tensor, activations quantized to
   uint8 at run time). Its score is evaluated, not assumed: `evaluate_policy` on the record's environment with
   the episodes and evaluation seed of its final evaluation; the float32 ONNX model's score likewise.
5. Latency: single-thread CPU wall time of one call (torch.set_num_threads(1); ONNX Runtime with one intra-op
   and one inter-op thread), after warm-up calls, median and 90th percentile, at batch 1 and 256, for the
   PyTorch actor (eager, its deterministic forward under inference mode), ONNX Runtime float32 and int8.
   Every seed and dataset of one environment shares the architecture's shapes, so latency is measured once per
   (environment, architecture), on the first record in the table's order; sizes, the check and the scores are
   per record.

Outputs: `table4_deployment.md` and `.tex` (two tables: size and latency per environment and architecture;
scores per dataset and architecture, mean over seeds) and `deployment.json` with every number unrounded, the
settings, the machine that wrote it and the library versions, the SHA-256 of each actor file and of its data, and
the machine each latency was measured on.

A rerun keeps an actor's row from the folder's earlier `deployment.json` while its actor file and data have the
recorded digests (unless `recompute`, or `onnx_dir` asks for every exported model), and an (environment,
architecture)'s latency while the actor it was measured on is kept and the calls and warm-up are the same: it
repeats nothing and needs no data for kept rows, so a grid whose data only some CPUs regenerate (recipe 1) still
gets one whole table. Kept latencies keep the machine they were timed on, and the caption names each machine
when there are several.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from bench.data.download import file_sha256
from bench.data.loader import OfflineDataset, load_dataset
from bench.data.registry import get_env_spec
from bench.errors import BenchError, did_you_mean
from bench.evaluate import evaluate_policy
from bench.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from bench.nets.kan import KAN, KANLinear, normalize_spline_input, spline_features_plain
from bench.nets.mlp import MLP
from bench.nets.spec import count_parameters
from bench.report.records import arch_label, display_name, grid_file_of, read_grid_file, record_algorithm
from bench.report.tables import ENV_ORDER, MISSING, Table, to_latex, to_markdown, values_mean_std
from bench.train import actor_path, device_info, library_versions, load_trained_actor, now, read_record

EXPORT_TOLERANCE = 1e-5
EXPORT_TOLERANCE_TEXT = "1e-5"
BATCH_SIZES = (1, 256)
RUNTIMES = ("torch", "onnx-fp32", "onnx-int8")
RUNTIME_LABELS = {"torch": "PyTorch", "onnx-fp32": "ORT fp32", "onnx-int8": "ORT int8"}
DEFAULT_CALLS = 1000
DEFAULT_WARMUP = 50
LARGE_BATCH_CALLS_DIVISOR = 5  # batch 256 gets a fifth of the calls: each call is much longer
CHECK_CHUNK = 65_536  # states per call when comparing actions on a whole dataset
TABLE_STEM = "table4_deployment"
JSON_NAME = "deployment.json"
SCORE_DECIMALS = 1

T = TypeVar("T")


class FrozenLinear(nn.Module):
    """nn.Linear as `x @ W + b` with W (in, out) and b constants: ONNX MatMul + Add with an initializer weight,
    the pattern dynamic quantization makes int8 (it leaves the Gemm that nn.Linear exports to alone)."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", layer.weight.detach().T.contiguous().clone())
        bias = (
            layer.bias.detach().clone()
            if layer.bias is not None
            else torch.zeros(layer.out_features, dtype=layer.weight.dtype)
        )
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight + self.bias


class FrozenKANLinear(nn.Module):
    """A KANLinear for inference: the combined weight [w_b; w_s * c] computed once into a (features, out)
    constant, the features by `spline_features_plain`; the same outputs as the layer up to float rounding."""

    def __init__(self, layer: KANLinear) -> None:
        super().__init__()
        if layer.ensemble_size is not None:
            raise ValueError("FrozenKANLinear takes a single layer; take one member out of an ensemble first")
        self.options = layer.options
        self.register_buffer("weight", layer.combined_weight().detach().T.contiguous().clone())
        self.register_buffer("grid_lo", layer.grid_lo.detach().clone())
        self.register_buffer("grid_hi", layer.grid_hi.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        o = self.options
        x_spline = normalize_spline_input(x, o.input_norm)
        features = spline_features_plain(
            x, x_spline, self.grid_lo, self.grid_hi, o.grid_size, o.spline_order, int(o.base_activation)
        )
        return features.flatten(-2) @ self.weight


def frozen_body(network: nn.Module) -> nn.Module:
    """A copy of an actor body with constant weights: MLP and KAN layers replaced by their frozen forms, any
    other body (RBF, plug-ins: plain torch ops already) copied as it is. Its forward is the body's."""
    body = copy.deepcopy(network)
    if isinstance(network, MLP):
        body.layers = nn.ModuleList(FrozenLinear(layer) for layer in network.layers)
    elif isinstance(network, KAN):
        body.layers = nn.ModuleList(FrozenKANLinear(layer) for layer in network.layers)
    return body.requires_grad_(False).eval()


class DeployedActor(nn.Module):
    """The deterministic policy of a trained actor, (batch, obs_dim) normalized states -> (batch, act_dim)
    actions, with frozen weights: the module that is exported.

    The action is tanh of the body's first act_dim outputs times max_action: CQL's tanh(mean) * max_action
    (`TanhGaussianActor`; its other outputs are the log-std), and the same for an actor whose body outputs the
    act_dim values of its deterministic action tanh(body) * max_action.
    """

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        if actor.population is not None:
            raise ValueError("DeployedActor takes a single actor; take one member out of a population first")
        self.obs_dim, self.act_dim, self.max_action = actor.obs_dim, actor.act_dim, actor.max_action
        self.body = frozen_body(actor.network)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.body(obs)[..., : self.act_dim]) * self.max_action


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and the quantizer's warnings and log lines (advice, optional-package notices)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def export_onnx(model: DeployedActor, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Export `model` to one self-contained ONNX file at `path` (input `obs` of `dtype`, output `action`, dynamic
    batch)."""
    example = torch.zeros(2, model.obs_dim, dtype=dtype)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=["obs"],
            output_names=["action"],
            dynamic_shapes={"obs": {0: torch.export.Dim("batch")}},
            external_data=False,
        )
    proto = program.model_proto
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    atomic_write_bytes(path, proto.SerializeToString())


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 quantization of an exported model: MatMul weights int8 (signed, per tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)


def onnx_session(path: Path) -> Any:
    """An onnxruntime CPU session of the model at `path` with one intra-op and one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_policy(actor: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch actor's deterministic action as a numpy function of float32 states."""

    def act(states: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return actor.act(torch.from_numpy(states)).numpy()

    return act


def onnx_policy(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX model's action as a numpy function of float32 states."""
    return lambda states: session.run(None, {"obs": states})[0]


def onnx_score(
    session: Any, env: str, episodes: int, seed: int, state_mean: np.ndarray | None, state_std: np.ndarray | None
) -> float:
    """The mean normalized score of an ONNX model's policy over `episodes` episodes from evaluation seed `seed`,
    the policy seeing states normalized with `state_mean` and `state_std` (as `evaluate_policy` does)."""
    result = evaluate_policy(
        env, onnx_policy(session), episodes=episodes, seed=seed, state_mean=state_mean, state_std=state_std
    )
    return result.mean_normalized_score


def actions_on(policy: Callable[[np.ndarray], np.ndarray], states: np.ndarray) -> np.ndarray:
    """`policy` on every row of `states`, in chunks of CHECK_CHUNK rows."""
    return np.concatenate([policy(states[i : i + CHECK_CHUNK]) for i in range(0, len(states), CHECK_CHUNK)])


def float64_policy(actor: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """A float64 copy of the trained actor's deterministic action: what its float32 actions would be without
    float32 rounding, the reference that tells an export's error from the actor's own sensitivity to rounding."""
    reference = copy.deepcopy(actor).double()

    def act(states: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return reference.act(torch.as_tensor(states, dtype=torch.float64)).numpy()

    return act


def float64_export_error(actor: nn.Module, states: np.ndarray, float64_actions: np.ndarray, path: Path) -> float:
    """The largest |action difference| between the float64 PyTorch actor (`float64_actions` on `states`) and the
    same deployment form exported in float64 to `path`, under ONNX Runtime: whether the exported graph computes
    the actor's function, for an actor whose float32 evaluation alone moves its actions by more than the export
    tolerance, so that float32 models cannot show it."""
    export_onnx(DeployedActor(copy.deepcopy(actor).double()), path, dtype=torch.float64)
    exported = actions_on(onnx_policy(onnx_session(path)), states.astype(np.float64))
    return float(np.abs(exported - float64_actions).max())


def normalized_states(dataset: OfflineDataset, normalize: bool) -> np.ndarray:
    """The dataset's states as the actor saw them in training: z-scored with its mean and std (float32)."""
    observations = dataset.transitions.observations
    if not normalize:
        return np.ascontiguousarray(observations, dtype=np.float32)
    return np.ascontiguousarray((observations - dataset.state_mean) / dataset.state_std, dtype=np.float32)


@dataclass(frozen=True)
class DatasetStates:
    """What deployment keeps of a dataset: its SHA-256, the state mean and std the actor's inputs were normalized
    with (None without normalization), the states as the actor saw them, the dataset's actions in them, where
    its episodes end, and its rewards and dones."""

    sha256: str
    state_mean: np.ndarray | None
    state_std: np.ndarray | None
    states: np.ndarray
    actions: np.ndarray
    episode_ends: np.ndarray  # the index after each episode's last transition, in order
    rewards: np.ndarray | None = None  # as in the file (before any reward normalization), and the dones
    dones: np.ndarray | None = None

    @classmethod
    def of(cls, dataset: OfflineDataset, normalize: bool) -> DatasetStates:
        mean, std = (dataset.state_mean, dataset.state_std) if normalize else (None, None)
        states = normalized_states(dataset, normalize)
        t = dataset.transitions
        return cls(dataset.sha256, mean, std, states, t.actions, episode_ends(dataset), t.rewards, t.dones)


def episode_ends(dataset: OfflineDataset) -> np.ndarray:
    """Where the dataset's episodes end: after a terminal transition, or where the next transition does not start
    in the state this one led to (a timeout, or the final timestep Q-learning transitions leave out)."""
    t = dataset.transitions
    broken = np.any(t.next_observations[:-1] != t.observations[1:], axis=1) | (t.dones[:-1] > 0)
    return np.append(np.flatnonzero(broken) + 1, len(t)).astype(np.int64)


def write_model_inputs(path: Path, record_name: str, record: dict[str, Any], dataset: DatasetStates) -> None:
    """Beside an actor's .onnx files: what its models take and give, so that they run without this suite or the
    dataset (the state normalization stays outside the model, as in training and evaluation)."""
    env = get_env_spec(record["dataset"]["env"])
    normalized = dataset.state_mean is not None and dataset.state_std is not None
    atomic_write_json(
        path,
        {
            "record": record_name,
            "env_id": env.env_id,
            "architecture": record["architecture"],
            "input": {
                "name": "obs",
                "shape": ["batch", env.obs_dim],
                "dtype": "float32",
                "transform": "(state - state_mean) / state_std" if normalized else "none: the raw state",
                "state_mean": None if not normalized else np.asarray(dataset.state_mean).reshape(-1).tolist(),
                "state_std": None if not normalized else np.asarray(dataset.state_std).reshape(-1).tolist(),
            },
            "output": {
                "shape": ["batch", env.act_dim],
                "meaning": "the deterministic action, already in the environment's action range",
            },
            "dataset_sha256": dataset.sha256,
        },
    )


def record_dataset(
    path: Path,
    record: dict[str, Any],
    loaded: dict[tuple[str, bool], DatasetStates],
    cache_dir: Path | None,
    local_dir: Path | None,
) -> DatasetStates:
    """The data of the record at `path` as its actor saw it, loaded once per (dataset, normalization) into
    `loaded`. BenchError when the file now holds other transitions than the run trained on."""
    name = record["cell"]["dataset"]
    normalize = bool(record["config"].get("normalize_states", True))
    if (name, normalize) not in loaded:
        loaded[(name, normalize)] = DatasetStates.of(
            load_dataset(name, cache_dir=cache_dir, local_dir=local_dir), normalize
        )
    dataset = loaded[(name, normalize)]
    if record["dataset"].get("sha256") and record["dataset"]["sha256"] != dataset.sha256:
        raise BenchError(
            f"{path} was trained on other data than {name} holds now (dataset.sha256 differs: the file was "
            "replaced or regenerated since); its actor needs the data it trained on to normalize states and compare "
            "actions, so restore that file or train the cell again"
        )
    return dataset


@dataclass(frozen=True)
class Latency:
    """Wall time of one call of one runtime at one batch size, in microseconds."""

    runtime: str  # one of RUNTIMES
    batch: int
    calls: int
    warmup: int
    median_us: float
    p90_us: float
    mean_us: float
    min_us: float


def time_calls(call: Callable[[], object], runtime: str, batch: int, calls: int, warmup: int) -> Latency:
    """`warmup` untimed calls, then `calls` calls timed one by one."""
    for _ in range(warmup):
        call()
    samples = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        call()
        samples[i] = time.perf_counter_ns() - start
    samples /= 1e3
    return Latency(
        runtime=runtime,
        batch=batch,
        calls=calls,
        warmup=warmup,
        median_us=float(np.median(samples)),
        p90_us=float(np.percentile(samples, 90)),
        mean_us=float(samples.mean()),
        min_us=float(samples.min()),
    )


def calls_at(batch: int, calls: int) -> int:
    """Timed calls at `batch`: `calls` at batch 1, a fifth of them (at least one) at larger batches."""
    return calls if batch == 1 else max(1, calls // LARGE_BATCH_CALLS_DIVISOR)


def measure_latency(
    actor: nn.Module, sessions: dict[str, Any], states: np.ndarray, calls: int, warmup: int
) -> list[Latency]:
    """Latency of every runtime at every batch size on the first states of the dataset (repeated to fill a
    batch), single-threaded; the caller holds torch at one thread."""
    results = []
    for batch in BATCH_SIZES:
        inputs = np.ascontiguousarray(np.resize(states, (batch, states.shape[1])), dtype=np.float32)
        obs = torch.from_numpy(inputs)
        n = calls_at(batch, calls)
        with torch.inference_mode():
            results.append(time_calls(lambda o=obs: actor.act(o), "torch", batch, n, warmup))
        for runtime in ("onnx-fp32", "onnx-int8"):
            session = sessions[runtime]
            feed = {"obs": inputs}
            results.append(time_calls(lambda s=session, f=feed: s.run(None, f), runtime, batch, n, warmup))
    return results


@dataclass
class ActorDeployment:
    """One trained actor (one record): sizes, the export check and the three scores; one row of
    deployment.json's `actors`."""

    record: str
    dataset: str
    dataset_name: str  # as the tables print it (local and Minari data marked)
    env: str
    arch: str
    seed: int
    actor_spec: str
    parameters: int  # the actor network's trainable parameters, as Table 2 counts them
    fp32_bytes: int
    int8_bytes: int
    states_checked: int
    fp32_max_action_error: float  # largest |ONNX fp32 action - PyTorch action| over the dataset's states
    int8_max_action_error: float
    episodes: int
    evaluation_seed: int
    record_score: float | None  # the record's own final score (PyTorch, in training)
    fp32_score: float | None
    int8_score: float | None
    actor_sha256: str = ""  # of the actor file and of the dataset's transitions the row was measured on
    dataset_sha256: str = ""
    # Largest |PyTorch float32 action - PyTorch float64 action|: the actor's own sensitivity to float32 rounding
    # (None in rows written before it was measured).
    float32_rounding: float | None = None
    # Largest |ONNX float64 action - PyTorch float64 action|, measured where both the float32 export's difference
    # and the actor's own float32 rounding exceed the tolerance (`float64_export_error`); else None.
    float64_export_error: float | None = None
    kept: bool = field(default=False, compare=False)  # taken from an earlier deployment.json, not written to it


@dataclass
class ArchitectureLatency:
    """The latencies of one (environment, architecture), measured on one of its actors."""

    env: str
    arch: str
    actor_spec: str
    record: str  # the actor it was measured on
    results: list[Latency] = field(default_factory=list)
    machine: str = ""  # the CPU it was measured on (`device_info` name)

    def get(self, runtime: str, batch: int) -> Latency | None:
        return next((r for r in self.results if r.runtime == runtime and r.batch == batch), None)


@dataclass
class DeploySummary:
    """What `deploy_grid` measured and wrote; `format()` is what `python -m bench deploy` prints."""

    results_dir: Path
    actors: list[ActorDeployment]
    latencies: list[ArchitectureLatency]
    skipped: list[str]
    paths: list[Path]

    def format(self) -> str:
        kept = sum(actor.kept for actor in self.actors)
        lines = [
            f"deploy of {self.results_dir}: {len(self.actors)} actor(s)"
            + (f" ({kept} kept from {JSON_NAME}, unchanged)" if kept else "")
            + f", {len(self.skipped)} record(s) skipped"
        ]
        for latency in self.latencies:
            fast = [latency.get(runtime, 1) for runtime in RUNTIMES]
            shown = ", ".join(f"{RUNTIME_LABELS[r.runtime]} {r.median_us:.1f} us" for r in fast if r is not None)
            lines.append(f"{latency.env} {latency.arch}: batch 1 median {shown}")
        lines.append(f"wrote {', '.join(str(p) for p in self.paths)}")
        return "\n".join(lines)


def find_actor_records(results_dir: Path) -> tuple[list[Path], list[str]]:
    """Finished records under `results_dir` with their final actor beside them, and a note per skipped file."""
    usable, skipped = [], []
    for path in sorted(Path(results_dir).rglob("*.json")):
        if path.name.startswith(".") or not path.is_file():
            continue  # temporary files of atomic writes
        record = read_record(path)
        if record is None:
            skipped.append(f"{path}: not a run record (or unreadable); skipped")
        elif record["status"] != "done":
            skipped.append(f"{path}: status {record['status']}, no final actor; skipped")
        elif not actor_path(path).exists():
            skipped.append(
                f"{path}: no final actor {actor_path(path).name} (older records were written without it); skipped"
            )
        else:
            usable.append(path)
    return usable, skipped


def order_records(results_dir: Path, records: dict[Path, dict[str, Any]]) -> list[Path]:
    """Records in table order: environment (hopper, walker2d, halfcheetah), architecture and dataset in the
    grid file's order when there is one (else by name), then seed."""
    archs: list[str] = []
    datasets: list[str] = []
    found = grid_file_of(Path(results_dir))
    if found is not None:
        grid = read_grid_file(*found)
        archs, datasets = list(grid.architectures), list(grid.datasets)

    def key(path: Path) -> tuple[Any, ...]:
        record = records[path]
        env, arch, dataset = record["dataset"]["env"], record["cell"]["arch"], record["cell"]["dataset"]
        # A multi-algorithm grid file lists its architectures labelled ("TD3+BC mlp"); the record names the bare one.
        listed = arch if arch in archs else arch_label(record_algorithm(record), arch)
        return (
            ENV_ORDER.index(env) if env in ENV_ORDER else len(ENV_ORDER),
            env,
            record_algorithm(record),
            archs.index(listed) if listed in archs else len(archs),
            arch,
            datasets.index(dataset) if dataset in datasets else len(datasets),
            dataset,
            record["cell"]["seed"],
        )

    return sorted(records, key=key)


@dataclass(frozen=True)
class ActorRecords:
    """The finished records with their actors under a results folder, and those a table takes.

    `records` holds every usable record (a table of a few architectures still carries the others' stored
    numbers), `chosen` the ones the table takes in table order, `labels` each record's architecture as tables
    name it (per algorithm, "TD3+BC mlp", when the folder holds several) and `skipped` a note per file left out.
    `architectures`, `datasets` and `seeds` are the cells the table should hold, from the folder's grid file (of
    the narrowed architectures and datasets only), so that a table read while its grid trains can name what is
    not in it yet; empty, and 0 seeds, for records without a grid file.
    """

    records: dict[Path, dict[str, Any]]
    chosen: list[Path]
    labels: dict[Path, str]
    skipped: list[str]
    architectures: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    seeds: int = 0


def expected_cells(
    results_dir: Path, architectures: Sequence[str] = (), datasets: Sequence[str] = ()
) -> tuple[list[str], list[str], int]:
    """The architectures (labelled as the tables name them), datasets and seed count of the grid file of the
    records under `results_dir`, of `architectures` (labels or bare names) and `datasets` only when given; empty
    and 0 for records without a grid file."""
    found = grid_file_of(Path(results_dir))
    if found is None:
        return [], [], 0
    grid = read_grid_file(*found)
    if len(grid.algorithms) > 1:
        pairs = [
            (arch_label(a, arch), arch) for a in grid.algorithms for arch in read_grid_file(found[0], a).architectures
        ]
    else:
        pairs = [(arch, arch) for arch in grid.architectures]
    archs = [label for label, bare in pairs if not architectures or label in architectures or bare in architectures]
    return archs, [d for d in grid.datasets if not datasets or d in datasets], len(grid.seeds)


def select_actor_records(
    results_dir: Path, architectures: Sequence[str] = (), datasets: Sequence[str] = ()
) -> ActorRecords:
    """The records under `results_dir` whose final actor is kept beside them, of `architectures` only (labels or
    bare names, in that order) and of `datasets` only (as the grid names them) when given. BenchError when the
    folder is missing, a name has no actor there, or no record is left."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(f"results folder {results_dir} does not exist; run a grid first or name its records' folder")
    paths, skipped = find_actor_records(results_dir)
    records = {path: read_record(path) or {} for path in paths}
    several_algorithms = len({record_algorithm(r) for r in records.values()}) > 1
    labels = {
        path: arch_label(record_algorithm(r), r["cell"]["arch"]) if several_algorithms else r["cell"]["arch"]
        for path, r in records.items()
    }
    chosen = dict(records)
    if architectures:
        known = sorted(set(labels.values()) | {r["cell"]["arch"] for r in records.values()})
        for name in architectures:
            if name not in known:
                raise BenchError(
                    f"--architectures: {name!r} has no trained actor under {results_dir}; "
                    f"{did_you_mean(name, known, cutoff=0.5)}its architectures: {', '.join(known)}"
                )
        chosen = {p: r for p, r in records.items() if labels[p] in architectures or r["cell"]["arch"] in architectures}
    if datasets:
        known = sorted({r["cell"]["dataset"] for r in records.values()})
        for name in datasets:
            if name not in known:
                raise BenchError(
                    f"--datasets: {name!r} has no trained actor under {results_dir}; "
                    f"{did_you_mean(name, known, cutoff=0.5)}its datasets: {', '.join(known)}"
                )
        chosen = {p: r for p, r in chosen.items() if r["cell"]["dataset"] in datasets}
    if not chosen:
        raise BenchError(
            f"no finished record with its final actor (<record>.actor.pt beside seed<k>.json) under {results_dir}"
            + (f"; {len(skipped)} JSON file(s) skipped: {skipped[0]}" if skipped else "")
        )
    ordered = order_records(results_dir, chosen)
    if architectures:
        rank = {name: i for i, name in enumerate(architectures)}
        ordered.sort(key=lambda p: rank.get(labels[p], rank.get(records[p]["cell"]["arch"], len(rank))))
    return ActorRecords(records, ordered, labels, skipped, *expected_cells(results_dir, architectures, datasets))


def dataclass_from(cls: type[T], entry: dict[str, Any]) -> T:
    """The dataclass `cls` from one JSON object of an earlier output, keys it does not know ignored (`kept`, which
    says where a row came from, is never taken from a file)."""
    names = {f.name for f in fields(cls)} - {"kept"}
    return cls(**{k: v for k, v in entry.items() if k in names})


def read_earlier(path: Path, parse: Callable[[dict[str, Any]], T], what: str, redo: str) -> T | None:
    """`parse` of the earlier output `path` (`what`, as "an actions.json"), None when there is none. BenchError
    naming the file when it cannot be parsed, saying that --recompute will `redo` and replace it."""
    if not path.exists():
        return None
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BenchError(
            f"{path} is not {what} this version can read ({type(exc).__name__}: {exc}); "
            f"pass --recompute to {redo} and replace it"
        ) from None


def earlier_or_nothing(read: Callable[[], T], nothing: T, recompute: bool) -> T:
    """`read()` of an earlier output; with `recompute`, `nothing` in place of a file this version cannot read,
    which the run then replaces (without it, the BenchError: such a file is never silently replaced)."""
    try:
        return read()
    except BenchError:
        if not recompute:
            raise
        return nothing


def actor_digests(path: Path, record: dict[str, Any]) -> tuple[str, str]:
    """The SHA-256 of the actor file beside the record at `path` and of the transitions it trained on: what a
    kept result must still match."""
    return file_sha256(actor_path(path)), record["dataset"].get("sha256", "")


@dataclass
class EarlierDeployment:
    """What an earlier deployment.json can lend a rerun: rows that name their digests, by record path, and
    latencies timed with the same calls and warm-up, by (environment, architecture)."""

    actors: dict[str, ActorDeployment] = field(default_factory=dict)
    latencies: dict[tuple[str, str], ArchitectureLatency] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, calls: int, warmup: int) -> EarlierDeployment:
        def parse(document: dict[str, Any]) -> tuple[list[ActorDeployment], list[ArchitectureLatency]]:
            actors = [dataclass_from(ActorDeployment, a) for a in document["actors"]]
            latencies = [
                ArchitectureLatency(
                    env=entry["env"],
                    arch=entry["arch"],
                    actor_spec=entry["actor_spec"],
                    record=entry["record"],
                    results=[Latency(**result) for result in entry["results"]],
                    # Files from before per-latency machines were timed on the one machine they name.
                    machine=entry.get("machine") or document["machine"]["name"],
                )
                for entry in document["latency"]
            ]
            return actors, latencies

        read = read_earlier(path, parse, "a deployment.json", "deploy every actor again")
        if read is None:
            return cls()
        actors, latencies = read
        same_timing = {(batch, calls_at(batch, calls), warmup) for batch in BATCH_SIZES}
        return cls(
            {a.record: a for a in actors if a.actor_sha256 and a.dataset_sha256},
            {
                (lat.env, lat.arch): lat
                for lat in latencies
                if {(r.batch, r.calls, r.warmup) for r in lat.results} == same_timing
            },
        )


def deploy_grid(
    results_dir: Path,
    tables_dir: Path,
    *,
    calls: int = DEFAULT_CALLS,
    warmup: int = DEFAULT_WARMUP,
    onnx_dir: Path | None = None,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    recompute: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DeploySummary:
    """Export, quantize, check, evaluate and time every trained actor under `results_dir`; write Table 4 and
    deployment.json into `tables_dir`. Rows and latencies of `tables_dir`'s earlier deployment.json are kept
    while unchanged (module docstring), unless `recompute` or `onnx_dir`. The .onnx files go to `onnx_dir` (laid
    out like the records) when given, else to a temporary folder that is removed afterwards. `progress` gets one
    line per actor (default: stderr).
    """
    results_dir = Path(results_dir)
    if calls < 1 or warmup < 0:
        raise BenchError(f"--calls must be at least 1 and --warmup at least 0, got {calls} and {warmup}")
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    selection = select_actor_records(results_dir)
    # Kept rows export nothing, so a run asked to keep every actor's ONNX files (`onnx_dir`) deploys them all.
    keep = not recompute and onnx_dir is None
    earlier = EarlierDeployment.read(Path(tables_dir) / JSON_NAME, calls, warmup) if keep else EarlierDeployment()
    for note in selection.skipped:
        say(f"note: {note}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.ExitStack() as stack:
            folder = onnx_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-deploy-")))
            actors, latencies = _deploy_records(
                selection, results_dir, Path(folder), calls, warmup, cache_dir, local_dir, say, earlier
            )
    finally:
        torch.set_num_threads(threads)
    written = write_outputs(actors, latencies, selection.skipped, results_dir, Path(tables_dir), calls, warmup)
    return DeploySummary(results_dir, actors, latencies, selection.skipped, written)


def _deploy_records(
    selection: ActorRecords,
    results_dir: Path,
    onnx_dir: Path,
    calls: int,
    warmup: int,
    cache_dir: Path | None,
    local_dir: Path | None,
    say: Callable[[str], None],
    earlier: EarlierDeployment,
) -> tuple[list[ActorDeployment], list[ArchitectureLatency]]:
    """The `ActorDeployment` of every chosen record of `selection`, in its order, and, once per (environment,
    architecture), its latencies (module docstring), those of `earlier` kept while unchanged; one progress line
    per record. Architectures are named as `selection` labels them: per algorithm ("TD3+BC mlp") when the folder
    holds several, so each algorithm's actors get rows of their own."""
    ordered = selection.chosen
    machine = device_info(torch.device("cpu"))["name"]
    datasets: dict[tuple[str, bool], DatasetStates] = {}
    actors: list[ActorDeployment] = []
    latencies: dict[tuple[str, str], ArchitectureLatency] = {}
    for index, path in enumerate(ordered, start=1):
        record, arch = selection.records[path], selection.labels[path]
        key = (record["dataset"]["env"], arch)
        digests = actor_digests(path, record)
        kept = earlier.actors.get(str(path))
        if kept is None or (kept.actor_sha256, kept.dataset_sha256) != digests:
            kept = None
        elif key not in latencies:  # the first actor of its kind: keep it with the latency timed on it, or neither
            latency = earlier.latencies.get(key)
            if latency is not None and latency.record == str(path):
                latencies[key] = latency
            else:
                kept = None
        if kept is not None:
            row = replace(kept, arch=arch, record_score=record.get("final_score"), kept=True)
            actors.append(row)
            say(f"[{index}/{len(ordered)}] {row.dataset_name} {row.arch} seed {row.seed}: kept from {JSON_NAME}")
            continue
        actor, record = load_trained_actor(path)
        name = record["cell"]["dataset"]
        dataset = record_dataset(path, record, datasets, cache_dir, local_dir)
        states = dataset.states
        relative = path.relative_to(results_dir).with_suffix("")
        fp32_path = onnx_dir / f"{relative}.onnx"
        int8_path = onnx_dir / f"{relative}.int8.onnx"
        spec = record["architecture"]["actor"]
        try:
            export_onnx(DeployedActor(actor), fp32_path)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BenchError(
                f"{path}: exporting the {spec} actor to ONNX failed: {type(exc).__name__}: {first}"
            ) from None
        quantize_int8(fp32_path, int8_path)
        write_model_inputs(onnx_dir / f"{relative}.inputs.json", path.name, record, dataset)
        sessions = {"onnx-fp32": onnx_session(fp32_path), "onnx-int8": onnx_session(int8_path)}

        reference = actions_on(torch_policy(actor), states)
        exact = actions_on(float64_policy(actor), states)
        fp32_error = float(np.abs(actions_on(onnx_policy(sessions["onnx-fp32"]), states) - reference).max())
        int8_error = float(np.abs(actions_on(onnx_policy(sessions["onnx-int8"]), states) - reference).max())
        rounding = float(np.abs(reference - exact).max())
        float64_error = None
        if fp32_error > EXPORT_TOLERANCE and rounding > EXPORT_TOLERANCE:
            float64_error = float64_export_error(actor, states, exact, onnx_dir / f"{relative}.float64.onnx")
        if not (fp32_error <= EXPORT_TOLERANCE or (float64_error is not None and float64_error <= EXPORT_TOLERANCE)):
            in_float64 = "" if float64_error is None else f", and in float64 by up to {float64_error:.3g}"
            raise BenchError(
                f"{path}: the exported {spec} actor's actions differ from the PyTorch actor's by up to "
                f"{fp32_error:.3g} on the states of {name}{in_float64} (tolerance {EXPORT_TOLERANCE_TEXT}; the "
                f"actor's own float32 rounding: {rounding:.3g}); the export is wrong"
            )
        env = record["dataset"]["env"]
        episodes, eval_seed = int(record["evaluation"]["episodes"]), int(record["evaluation"]["seed"])
        mean, std = dataset.state_mean, dataset.state_std
        row = ActorDeployment(
            record=str(path),
            dataset=name,
            dataset_name=display_name(name, record["dataset"].get("source", "")),
            env=env,
            arch=arch,
            seed=int(record["cell"]["seed"]),
            actor_spec=spec,
            parameters=count_parameters(actor.network),
            fp32_bytes=fp32_path.stat().st_size,
            int8_bytes=int8_path.stat().st_size,
            states_checked=len(states),
            fp32_max_action_error=fp32_error,
            float32_rounding=rounding,
            float64_export_error=float64_error,
            int8_max_action_error=int8_error,
            episodes=episodes,
            evaluation_seed=eval_seed,
            record_score=record.get("final_score"),
            fp32_score=onnx_score(sessions["onnx-fp32"], env, episodes, eval_seed, mean, std),
            int8_score=onnx_score(sessions["onnx-int8"], env, episodes, eval_seed, mean, std),
            actor_sha256=digests[0],
            dataset_sha256=dataset.sha256,
        )
        actors.append(row)
        line = (
            f"[{index}/{len(ordered)}] {row.dataset_name} {row.arch} seed {row.seed}: {row.parameters:,} params, "
            f"{row.fp32_bytes:,} B fp32, {row.int8_bytes:,} B int8, max |action diff| fp32 {fp32_error:.1e} "
            f"int8 {int8_error:.1e}; score {_score_text(row.record_score)} record, {row.fp32_score:.1f} fp32, "
            f"{row.int8_score:.1f} int8"
        )
        if key not in latencies:
            measured = measure_latency(actor, sessions, states, calls, warmup)
            latencies[key] = ArchitectureLatency(row.env, row.arch, spec, str(path), measured, machine)
            fast = ", ".join(f"{RUNTIME_LABELS[r.runtime]} {r.median_us:.1f}" for r in measured if r.batch == 1)
            line += f"; batch-1 median us: {fast}"
        say(line)
    return actors, list(latencies.values())


def _score_text(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def _microseconds(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _value_or_range(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _signed(value: float) -> str:
    """A difference with its sign (−, the table minus), and no sign when it rounds to zero."""
    text = f"{abs(value):.{SCORE_DECIMALS}f}"
    if round(value, SCORE_DECIMALS) == 0:
        return text
    return f"+{text}" if value > 0 else f"−{text}"


def size_latency_table(
    actors: list[ActorDeployment], latencies: list[ArchitectureLatency], calls: int, warmup: int, device: str
) -> Table:
    """Table 4, first part: parameters, file sizes and latency per (environment, architecture)."""
    columns = [f"{RUNTIME_LABELS[runtime]} b={batch}" for batch in BATCH_SIZES for runtime in RUNTIMES]
    table = Table(
        stem=TABLE_STEM,
        number=4,
        title="Deployment size and CPU latency",
        caption=(
            "Per trained actor network, exported as its deterministic policy tanh(mean) × max_action: trainable "
            "parameters (as in Table 2), bytes of the float32 ONNX file and of its dynamically int8-quantized "
            "version (onnxruntime), and single-thread CPU latency of one call in microseconds, median (90th "
            "percentile), at "
            f"batch 1 ({calls:,} calls) and batch {BATCH_SIZES[-1]} ({calls_at(BATCH_SIZES[-1], calls):,} calls), "
            f"after {warmup} warm-up calls: PyTorch eager, ONNX Runtime float32 and int8. {device}."
        ),
        header=["Environment", "Architecture", "Params", "fp32 bytes", "int8 bytes", *columns],
        align="ll" + "r" * (3 + len(columns)),
    )
    int8_larger: list[str] = []
    for i, latency in enumerate(latencies):
        group = [a for a in actors if (a.env, a.arch) == (latency.env, latency.arch)]
        first_of_env = i == 0 or latencies[i - 1].env != latency.env
        cells = [
            latency.env if first_of_env else "",
            latency.arch,
            _value_or_range([a.parameters for a in group]),
            _value_or_range([a.fp32_bytes for a in group]),
            _value_or_range([a.int8_bytes for a in group]),
        ]
        for batch in BATCH_SIZES:
            for runtime in RUNTIMES:
                result = latency.get(runtime, batch)
                cells.append(
                    MISSING if result is None else f"{_microseconds(result.median_us)} ({_microseconds(result.p90_us)})"
                )
        table.add_row(cells, rule_before=first_of_env)
        if any(a.int8_bytes >= a.fp32_bytes for a in group):
            int8_larger.append(f"{latency.env}/{latency.arch}")
    table.notes = [
        "Bytes: the whole .onnx file (graph and weights). KAN layers ship their combined weight [w_b; w_s * c], "
        "computed once, so an edge holds G + k + 1 numbers rather than its G + k + 2 trainable parameters. int8 "
        "quantizes the MatMul weights only (per tensor; grid bounds, biases and normalization parameters stay "
        "float32) and adds quantize/dequantize operators; activations are quantized at run time.",
        "Latency: PyTorch is the trained actor's deterministic forward under torch.inference_mode with "
        "torch.set_num_threads(1); ONNX Runtime runs on the CPU execution provider with one intra-op and one "
        "inter-op thread, numpy in and out. Measured once per environment and architecture, on the first "
        "actor listed in deployment.json (every seed and dataset of an environment has the same shapes); "
        "a machine busy with other work lengthens the 90th percentile most.",
        export_note(actors),
    ]
    if int8_larger:
        table.notes.append(
            "int8 not smaller than float32 (the quantization operators and per-tensor scales outweigh the saved "
            f"weight bytes of a very small network): {', '.join(int8_larger)}."
        )
    return table


def score_table(actors: list[ActorDeployment]) -> Table:
    """Table 4, second part: the record's score beside the ONNX float32 and int8 scores per (dataset, arch)."""
    episodes = sorted({a.episodes for a in actors})
    table = Table(
        stem=f"{TABLE_STEM}_scores",
        number=4,
        title="Deployment scores",
        caption=(
            "Normalized score of each trained actor as its record has it (the final evaluation, PyTorch) and "
            "of its exported ONNX models, float32 and int8, each evaluated anew on the record's environment with "
            f"the same {'/'.join(map(str, episodes))} episodes and evaluation seeds as that final evaluation and the "
            "states normalized with the dataset's mean and std as in training; mean ± sample standard deviation "
            "over seeds. int8 − record: mean over seeds of the difference."
        ),
        header=["Dataset", "Architecture", "Seeds", "Record", "ONNX fp32", "ONNX int8", "int8 − record"],
        align="llrrrrr",
    )
    cells: dict[tuple[str, str], list[ActorDeployment]] = {}
    for actor in actors:
        cells.setdefault((actor.dataset, actor.arch), []).append(actor)
    order = sorted(cells, key=lambda key: min(actors.index(a) for a in cells[key]))
    previous = None
    for dataset, arch in order:
        group = cells[(dataset, arch)]
        row = [group[0].dataset_name if dataset != previous else "", arch, str(len(group))]
        for values in (
            [a.record_score for a in group],
            [a.fp32_score for a in group],
            [a.int8_score for a in group],
        ):
            row.append(values_mean_std(values, SCORE_DECIMALS))
        diffs = [
            a.int8_score - a.record_score for a in group if a.record_score is not None and a.int8_score is not None
        ]
        row.append(_signed(float(np.mean(diffs))) if len(diffs) == len(group) else MISSING)
        table.add_row(row, rule_before=dataset != previous)
        previous = dataset
    table.notes = [
        "The record's score comes from the actor in training (on the training device); the float32 ONNX model "
        "acts as it does up to float32 rounding (the export check above), yet MuJoCo amplifies such differences "
        "over an episode, so its score may differ slightly. A difference of the int8 score beyond that is the cost "
        "of quantization."
    ]
    return table


def _latex(tables: list[Table]) -> str:
    """The tables' LaTeX floats under one header that names the command that writes them."""
    header = (
        "% Table 4, deployment: generated by `python -m bench deploy`; edits are overwritten.\n"
        "% Needs \\usepackage{booktabs} (\\toprule, \\midrule, \\bottomrule); no other package.\n"
    )
    floats = [to_latex(table).split("\n", 2)[2] for table in tables]  # without each float's own comment lines
    return header + "\n".join(floats)


def export_note(actors: list[ActorDeployment]) -> str:
    """Table 4's note on the export check: the largest differences, and the actors whose own float32 rounding
    exceeds the tolerance, checked by their float64 exports (`float64_export_error`)."""
    sensitive = [a for a in actors if a.fp32_max_action_error > EXPORT_TOLERANCE]
    within = [a for a in actors if a.fp32_max_action_error <= EXPORT_TOLERANCE]
    note = (
        "Export check: on every state of each record's dataset (normalized as in training) the float32 ONNX "
        f"actions are within {EXPORT_TOLERANCE_TEXT} of the PyTorch actor's"
    )
    if within:
        note += f" (largest difference {max(a.fp32_max_action_error for a in within):.1e})"
    if not sensitive:
        return note + "."
    cells: dict[str, list[ActorDeployment]] = {}
    for actor in sensitive:
        cells.setdefault(f"{actor.dataset_name}/{actor.arch}", []).append(actor)
    listed = "; ".join(
        f"{cell} seed{'s' if len(group) > 1 else ''} {', '.join(str(a.seed) for a in group)}: up to "
        f"{max(a.fp32_max_action_error for a in group):.1e}, own rounding up to "
        f"{max(a.float32_rounding or 0.0 for a in group):.1e}, float64 export within "
        f"{max(a.float64_export_error or 0.0 for a in group):.1e}"
        for cell, group in cells.items()
    )
    return (
        f"{note}, except for actors whose own float32 evaluation moves their actions by more than that (their "
        "float32 against their float64 actions; a LayerNorm over a few nearly equal hidden units, for one, "
        "amplifies rounding); their deployment form exported in float64 acts as the float64 actor does within "
        f"{EXPORT_TOLERANCE_TEXT}: {listed}."
    )


def devices_phrase(latencies: list[ArchitectureLatency]) -> str:
    """The caption's machine: "Device: X", or with latencies kept from runs on other machines, each machine and
    what it timed: its environments when each machine timed whole environments, its architectures when each
    timed whole architectures (every environment of them), else its (environment/architecture) rows."""
    rows: dict[str, list[ArchitectureLatency]] = {}
    for latency in latencies:
        rows.setdefault(latency.machine, []).append(latency)
    if len(rows) == 1:
        return f"Device: {next(iter(rows))}"

    def whole(key: str) -> bool:  # no environment (or architecture) is split between machines
        owners: dict[str, set[str]] = {}
        for latency in latencies:
            owners.setdefault(getattr(latency, key), set()).add(latency.machine)
        return all(len(machines) == 1 for machines in owners.values())

    key = "env" if whole("env") else "arch" if whole("arch") else None

    def named(timed: list[ArchitectureLatency]) -> str:
        names = [getattr(t, key) if key else f"{t.env}/{t.arch}" for t in timed]
        return ", ".join(dict.fromkeys(names))

    return "Devices: " + "; ".join(f"{name} ({named(timed)})" for name, timed in rows.items())


def write_outputs(
    actors: list[ActorDeployment],
    latencies: list[ArchitectureLatency],
    skipped: list[str],
    results_dir: Path,
    tables_dir: Path,
    calls: int,
    warmup: int,
) -> list[Path]:
    """Write table4_deployment.md/.tex and deployment.json into `tables_dir` atomically; return the paths."""
    import onnx
    import onnxruntime
    import onnxscript

    machine = device_info(torch.device("cpu")) | {"torch_threads": 1, "platform": platform.platform()}
    tables = [size_latency_table(actors, latencies, calls, warmup, devices_phrase(latencies)), score_table(actors)]
    tex, md, js = (tables_dir / f"{TABLE_STEM}.tex", tables_dir / f"{TABLE_STEM}.md", tables_dir / JSON_NAME)
    atomic_write_text(tex, _latex(tables))
    atomic_write_text(md, "\n".join(to_markdown(table) for table in tables))
    versions = library_versions() | {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": onnxscript.__version__,
    }
    data = {
        "schema_version": 1,
        "results": str(results_dir),
        "created_at": now(),
        "machine": machine,
        "versions": versions,
        "settings": {
            "exporter": "torch.onnx.export(dynamo=True)",
            "quantization": "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8, per_channel=False)",
            "export_tolerance": EXPORT_TOLERANCE,
            "batch_sizes": list(BATCH_SIZES),
            "calls": {str(batch): calls_at(batch, calls) for batch in BATCH_SIZES},
            "warmup": warmup,
            "threads": {"torch": 1, "onnxruntime_intra_op": 1, "onnxruntime_inter_op": 1},
        },
        "actors": [{k: v for k, v in asdict(actor).items() if k != "kept"} for actor in actors],
        "latency": [asdict(latency) for latency in latencies],
        "skipped": skipped,
    }
    atomic_write_json(js, data)
    return [md, tex, js]
