"""A look inside a trained actor (`python -m bench explain RECORD`): the univariate functions of a KAN actor's first
layer, which state features they respond to, and the symbolic formula each one resembles.

What is computed, on the states of the record's dataset as the actor saw them (z-scored with the dataset's mean
and std when the run normalized states; at most `max_states` of them, drawn with a fixed seed):

- Edge curves. Edge (feature i -> unit o) of the first `KANLinear` is
  phi_oi(x) = w_b[o,i] * SiLU(x) + w_s[o,i] * sum_j c[o,i,j] * B_j(x), evaluated with the layer's own basis code
  (`KANLinear.basis`), so summing a state's phi_oi over i gives exactly the layer's output o. Each curve is drawn
  over the 1st-99th percentile of its feature on the data, where the actor acts.
- Edge attribution (pykan-style): an edge's score is the standard deviation of phi_oi over the states (how much
  the edge moves the unit's input on this data); a feature's score is the sum of its edges' scores, normalized
  so that the features sum to 1. It is the first layer's view only: every hidden unit counts the same, where
  pykan's full attribution weights an edge by the score of the unit it feeds, propagated back from the outputs.
  It reads the parameters, so it only exists for KAN actors.
- Gradient saliency, for any actor (the MLP comparison): the mean over states and action dimensions of
  |d action_k / d state_i| for the deterministic evaluation action (the actor's `act`, e.g. CQL's
  tanh(mean) * max_action), normalized to sum 1. Two actors are compared on the same states, normalized alike.
- Symbolic fits: every edge curve, sampled at `CURVE_POINTS` evenly spaced inputs over its data range, is
  fitted by a linear, quadratic and cubic polynomial (least squares) and by a*sin(b x + c) + d,
  a*tanh(b x + c) + d and a*exp(b x) + c (`scipy.optimize.curve_fit` from a few deterministic starting points
  whose linear parameters are solved exactly; a refinement that fails is skipped). The best fit is the simplest
  (`SYMBOLIC_LIBRARY` order: fewest parameters first) whose R^2 is within `R2_TIE` of the highest R^2.

The actor's body decides what is drawn: a B-spline KAN (`kan[...]`) gets everything, an MLP the saliency only,
and other bodies (`rbf[...]`, plug-ins, a KAN with layernorm inputs) a BenchError, since their edges are no
univariate function of one state feature.

Outputs (`explain_record`): edges.png/.pdf (a grid of small panels, rows = state features, columns = hidden
units, each curve over its data range with the data's histogram in grey), attribution.png/.pdf, explain.json
(every number above) and symbolic.md (a Markdown table of the per-edge best fits).
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import optimize, stats
from torch import Tensor, nn

from bench.agents.registry import DEFAULT_ALGORITHM
from bench.data.loader import load_dataset
from bench.errors import BenchError
from bench.fileio import atomic_save_figure, atomic_write_json, atomic_write_text
from bench.grid.spec import dataset_slug
from bench.nets.kan import KAN, KANLinear
from bench.nets.mlp import MLP
from bench.train import load_trained_actor, record_algorithm

DEFAULT_MAX_STATES = 50_000
STATE_SAMPLE_SEED = 0
CURVE_POINTS = 101
PERCENTILES = (1.0, 99.0)
R2_TIE = 1e-3
# Wider first layers show their most active units only (explain.json and symbolic.md still list every edge).
MAX_PANEL_UNITS = 16
ATTRIBUTION_METHOD = (
    "per edge the standard deviation of phi(x) over the states; per feature the sum over its edges (first layer, "
    "every unit weighted the same), normalized to sum 1"
)
SALIENCY_METHOD = (
    "mean over states and action dimensions of |d action / d state feature| for the deterministic action, "
    "normalized to sum 1"
)


@dataclass(frozen=True)
class ExplainStates:
    """The states an actor is explained on, as its network sees them, and where each feature lies."""

    values: np.ndarray  # (N, obs_dim) float32
    names: tuple[str, ...]
    normalized: bool
    low: np.ndarray  # (obs_dim,) the PERCENTILES[0] percentile of every feature
    high: np.ndarray  # (obs_dim,) the PERCENTILES[1] percentile
    dataset_transitions: int

    @property
    def axis_label(self) -> str:
        kind = "z-scored state" if self.normalized else "state"
        return f"{kind} ({PERCENTILES[0]:g}st-{PERCENTILES[1]:g}th percentile of the data)"


@dataclass(frozen=True)
class SymbolicFit:
    """One fitted formula of x (the edge's input feature) and its R^2 on the curve."""

    name: str
    formula: str
    params: dict[str, float]
    r2: float


@dataclass
class Explanation:
    """Everything `explain_record` found; `summary` is what explain.json holds."""

    out_dir: Path
    files: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """A few lines for the terminal: where the files went and the top-ranked features."""
        lines = [f"wrote {', '.join(path.name for path in self.files)} to {self.out_dir}"]
        for key, title in (("attribution", "edge attribution"), ("saliency", "gradient saliency")):
            block = self.summary.get(key)
            if block:
                top = sorted(block["scores"].items(), key=lambda item: -item[1])[:3]
                lines.append(f"{title}: " + ", ".join(f"{name} {score:.2f}" for name, score in top))
        return "\n".join(lines)


def load_states(
    record: dict[str, Any],
    *,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    max_states: int = DEFAULT_MAX_STATES,
) -> ExplainStates:
    """The observations of the record's dataset, loaded as training loads them and z-scored when the run
    normalized states; at most `max_states` rows, drawn without replacement with a fixed seed.

    BenchError when the file now holds other transitions than the run trained on (it was regenerated).
    """
    if max_states < 1:
        raise BenchError(f"max_states must be at least 1, got {max_states}")
    config = record["config"]
    dataset = load_dataset(
        config["dataset"],
        cache_dir=cache_dir,
        local_dir=local_dir,
        normalize_reward=config.get("normalize_reward", False),
    )
    trained_on = record["dataset"].get("sha256")
    if trained_on and trained_on != dataset.sha256:
        raise BenchError(
            f"{config['dataset']} now holds other transitions than the run trained on (dataset.sha256 "
            f"{trained_on[:12]}... in the record, {dataset.sha256[:12]}... now): the file was regenerated since; "
            "explain the actor on the data it saw, or train it again"
        )
    observations = dataset.transitions.observations
    if len(observations) > max_states:
        rows = np.random.default_rng(STATE_SAMPLE_SEED).choice(len(observations), max_states, replace=False)
        observations = observations[np.sort(rows)]
    normalized = bool(config.get("normalize_states", True))
    if normalized:
        observations = (observations - dataset.state_mean) / dataset.state_std
    values = np.ascontiguousarray(observations, dtype=np.float32)
    low, high = np.percentile(values, PERCENTILES, axis=0)
    names = dataset.env.observation_names or tuple(f"state[{i}]" for i in range(dataset.env.obs_dim))
    return ExplainStates(values, tuple(names), normalized, low, high, len(dataset.transitions))


def first_kan_layer(actor: nn.Module, spec: str) -> KANLinear:
    """The first layer of a B-spline KAN actor; BenchError for bodies whose edges are no univariate curves."""
    network = actor.network
    if not isinstance(network, KAN):
        raise BenchError(
            f"the actor is {spec}: its first layer has no per-edge univariate functions to draw (edge panels, "
            "attribution and symbolic fits need a B-spline KAN actor, kan[...]; an mlp[...] actor gets the "
            "gradient saliency)"
        )
    layer = network.layers[0]
    assert isinstance(layer, KANLinear)
    if layer.options.input_norm == "layernorm":
        raise BenchError(
            f"the actor {spec} uses KAN input_norm 'layernorm': each edge's spline then depends on every state "
            "feature, not on its own, so there is no univariate curve per edge to draw or fit"
        )
    return layer


def edge_values(layer: KANLinear, x: Tensor) -> Tensor:
    """phi_oi(x_i) for every row of x (N, in) and every edge: (N, out, in); summed over inputs it is layer(x).

    Built from the layer's parameters and its own basis code, so it is what the layer computes (spline-only
    layers have no SiLU term; `input_norm` is applied inside `KANLinear.basis`).
    """
    if layer.ensemble_size is not None:
        raise ValueError("edge_values takes a single layer; take one member out of an ensemble first")
    spline = torch.einsum("nij,oji->noi", layer.basis(x), layer.spline_weight)
    phi = layer.spline_scaler * spline
    if layer.base_weight is not None:
        phi = phi + layer.base_weight * F.silu(x).unsqueeze(-2)
    return phi


@torch.no_grad()
def edge_curves(
    layer: KANLinear, low: np.ndarray, high: np.ndarray, points: int = CURVE_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Every edge's curve on `points` evenly spaced inputs from low[i] to high[i] of its feature.

    Returns (grid (points, in), curves (points, out, in)) with curves[m, o, i] = phi_oi(grid[m, i]). Each edge
    is a function of its own input (no layernorm input, see `first_kan_layer`), so one batch holds every grid.
    """
    if layer.options.input_norm == "layernorm":
        raise ValueError("with input_norm 'layernorm' an edge is not a function of its own input alone")
    grid = np.linspace(low, high, points, dtype=np.float64).astype(np.float32)
    curves = edge_values(layer, torch.as_tensor(grid))
    return grid, curves.numpy()


@torch.no_grad()
def edge_spread(layer: KANLinear, states: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Standard deviation of every edge's phi over the states: (out, in), summed in float64 batch by batch."""
    total = np.zeros((layer.out_features, layer.in_features))
    squares = np.zeros_like(total)
    for start in range(0, len(states), batch_size):
        phi = edge_values(layer, torch.as_tensor(states[start : start + batch_size])).double().numpy()
        total += phi.sum(0)
        squares += np.square(phi).sum(0)
    mean = total / len(states)
    return np.sqrt(np.maximum(squares / len(states) - np.square(mean), 0.0))


def feature_attribution(spread: np.ndarray) -> np.ndarray:
    """Per feature, the sum of its edges' spreads (`edge_spread`, (out, in)), normalized to sum 1."""
    scores = spread.sum(0)
    if scores.sum() <= 0.0:
        raise BenchError("every first-layer edge is constant on the data: there is no attribution to rank")
    return scores / scores.sum()


def deterministic_action(actor: nn.Module, x: Tensor) -> Tensor:
    """The actor's deterministic evaluation action (`act`, which every actor of the suite has), differentiable in
    x: `act` runs under `torch.no_grad`, so its undecorated function is called."""
    return inspect.unwrap(type(actor).act)(actor, x)


def gradient_saliency(actor: nn.Module, states: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Mean |d action_k / d state_i| over the states and the action dims, per state feature, normalized to sum 1.

    The action is the deterministic one the policy is evaluated with; rows never interact in an actor, so the
    gradient of a batch's summed action k is every row's own gradient.
    """
    totals = torch.zeros(states.shape[1], dtype=torch.float64)
    for start in range(0, len(states), batch_size):
        x = torch.as_tensor(states[start : start + batch_size]).clone().requires_grad_(True)
        action = deterministic_action(actor, x)
        for k in range(action.shape[-1]):
            (grad,) = torch.autograd.grad(action[:, k].sum(), x, retain_graph=k + 1 < action.shape[-1])
            totals += grad.abs().double().sum(0)
    scores = totals.numpy()
    if scores.sum() <= 0.0:
        raise BenchError("the actor's action does not change with any state feature: no saliency to rank")
    return scores / scores.sum()


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    residual = float(np.sum(np.square(y - predicted)))
    total = float(np.sum(np.square(y - y.mean())))
    return 1.0 - residual / total


def _num(value: float) -> str:
    return f"{value:.4g}"


def _plus(value: float) -> str:
    """' + 0.3' or ' - 0.3': a term after the first one."""
    return f" - {_num(-value)}" if value < 0 else f" + {_num(value)}"


def _sin(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    return a * np.sin(b * x + c) + d


def _tanh(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    return a * np.tanh(b * x + c) + d


def _exp(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * np.exp(b * x) + c


def _sin_jacobian(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    wave, slope = np.sin(b * x + c), np.cos(b * x + c)
    return np.stack([wave, a * x * slope, a * slope, np.ones_like(x)], axis=1)


def _tanh_jacobian(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    slope = 1.0 - np.square(np.tanh(b * x + c))
    return np.stack([np.tanh(b * x + c), a * x * slope, a * slope, np.ones_like(x)], axis=1)


def _exp_jacobian(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    growth = np.exp(b * x)
    return np.stack([growth, a * x * growth, np.ones_like(x)], axis=1)


def _linear_solve(columns: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of y on the given columns."""
    return np.linalg.lstsq(np.stack(columns, axis=1), y, rcond=None)[0]


def _sin_starts(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """Frequencies from the curve's spectrum and from its range; for each, amplitude, phase and offset solved
    exactly (A sin(bx) + B cos(bx) + d is linear in A, B, d)."""
    span = float(x[-1] - x[0])
    spectrum = np.abs(np.fft.rfft(y - y.mean()))
    frequencies = np.fft.rfftfreq(len(x), d=span / (len(x) - 1))
    peak = float(frequencies[1 + int(np.argmax(spectrum[1:]))]) if len(spectrum) > 1 else 1.0 / span
    starts = []
    for cycles_per_unit in sorted({peak, 0.5 / span, 1.0 / span, 2.0 / span}):
        b = 2.0 * math.pi * cycles_per_unit
        sin_part, cos_part, d = _linear_solve([np.sin(b * x), np.cos(b * x), np.ones_like(x)], y)
        starts.append([math.hypot(sin_part, cos_part), b, math.atan2(cos_part, sin_part), d])
    return starts


def _tanh_starts(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """Steepness from the range, centre at the middle of the range or at the curve's steepest point."""
    half = float(x[-1] - x[0]) / 2.0
    steepest = float(x[int(np.argmax(np.abs(np.gradient(y, x))))])
    starts = []
    for centre in (float(x[0]) + half, steepest):
        for b in (1.0 / half, 4.0 / half):
            c = -b * centre
            a, d = _linear_solve([np.tanh(b * x + c), np.ones_like(x)], y)
            starts.append([a, b, c, d])
    return starts


def _exp_starts(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """Rates of either sign from the range; scale and offset solved exactly for each."""
    half = float(x[-1] - x[0]) / 2.0
    starts = []
    for b in (0.5 / half, -0.5 / half, 2.0 / half, -2.0 / half):
        a, c = _linear_solve([np.exp(b * x), np.ones_like(x)], y)
        starts.append([a, b, c])
    return starts


def _best_curve_fit(
    function: Callable[..., np.ndarray],
    jacobian: Callable[..., np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    starts: list[list[float]],
    refine: int = 2,
    max_evaluations: int = 400,
) -> np.ndarray | None:
    """The parameters with the lowest squared error among the starts and the `curve_fit` refinements of the
    `refine` best starts (a refinement that fails is skipped); None when no start has a finite error.

    The starts count as candidates themselves: on a degenerate curve (a line fitted by a tanh) the optimizer
    chases a limit and fails, while the start already fits.
    """

    def error_of(params: Sequence[float]) -> float:
        with np.errstate(all="ignore"):
            error = float(np.sum(np.square(y - function(x, *params))))
        return error if np.all(np.isfinite(params)) and math.isfinite(error) else math.inf

    candidates = [(error_of(start), k, np.asarray(start, dtype=np.float64)) for k, start in enumerate(starts)]
    candidates = sorted(candidate for candidate in candidates if math.isfinite(candidate[0]))
    if not candidates:
        return None
    best_error, _, best = candidates[0]
    for _, _, start in candidates[:refine]:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                params, _ = optimize.curve_fit(function, x, y, p0=start, jac=jacobian, maxfev=max_evaluations)
            except (RuntimeError, ValueError, optimize.OptimizeWarning):
                continue
        error = error_of(params)
        if error < best_error:
            best, best_error = params, error
    return best


def _polynomial_fit(x: np.ndarray, y: np.ndarray, degree: int, name: str) -> SymbolicFit:
    coefficients = np.polyfit(x, y, degree)  # highest power first
    letters = "abcd"[: degree + 1]
    terms = [f"x^{degree - k}" if degree - k > 1 else ("x" if degree - k == 1 else "") for k in range(degree + 1)]
    formula = ""
    for k, (value, term) in enumerate(zip(coefficients, terms, strict=True)):
        text = _num(value) if k == 0 else _plus(value)
        formula += text + (f"*{term}" if term else "")
    params = {letter: float(value) for letter, value in zip(letters, coefficients, strict=True)}
    return SymbolicFit(name, formula, params, _r2(y, np.polyval(coefficients, x)))


# Simplest first: the order in which equally good fits are preferred (parameter count, then polynomials).
SYMBOLIC_LIBRARY = ("linear", "quadratic", "exp", "cubic", "tanh", "sin")


def symbolic_fits(x: np.ndarray, y: np.ndarray) -> list[SymbolicFit]:
    """Every library function fitted to the curve y(x) (x increasing, evenly spaced), in `SYMBOLIC_LIBRARY` order;
    a nonlinear fit whose every start fails is left out. A constant curve gets one exact fit, linear with slope 0.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if np.ptp(y) <= 1e-9 * max(1.0, float(np.max(np.abs(y)))):
        value = float(y.mean())
        return [SymbolicFit("linear", f"0*x{_plus(value)}", {"a": 0.0, "b": value}, 1.0)]
    fits = {
        "linear": _polynomial_fit(x, y, 1, "linear"),
        "quadratic": _polynomial_fit(x, y, 2, "quadratic"),
        "cubic": _polynomial_fit(x, y, 3, "cubic"),
    }
    nonlinear = {
        "sin": (_sin, _sin_jacobian, _sin_starts, "{a}*sin({b}*x{c}){d}"),
        "tanh": (_tanh, _tanh_jacobian, _tanh_starts, "{a}*tanh({b}*x{c}){d}"),
        "exp": (_exp, _exp_jacobian, _exp_starts, "{a}*exp({b}*x){c}"),
    }
    for name, (function, jacobian, starts, template) in nonlinear.items():
        params = _best_curve_fit(function, jacobian, x, y, starts(x, y))
        if params is None:
            continue
        names = "abcd"[: len(params)]
        values = {letter: float(value) for letter, value in zip(names, params, strict=True)}
        text = {letter: _num(value) if k < 2 else _plus(value) for k, (letter, value) in enumerate(values.items())}
        fits[name] = SymbolicFit(name, template.format(**text), values, _r2(y, function(x, *params)))
    return [fits[name] for name in SYMBOLIC_LIBRARY if name in fits]


def best_symbolic_fit(fits: Sequence[SymbolicFit], tie: float = R2_TIE) -> SymbolicFit:
    """The simplest fit (library order) whose R^2 is within `tie` of the highest one."""
    top = max(fit.r2 for fit in fits)
    return next(fit for fit in fits if fit.r2 >= top - tie)


def _unit_labels(layer: KANLinear, actor: nn.Module) -> list[str]:
    """Columns: hidden units; when the first layer is the only one, its outputs (a tanh-Gaussian actor's means and
    log-stds, or one per action)."""
    if len(actor.network.layers) > 1:
        return [f"unit {o}" for o in range(layer.out_features)]
    act = actor.act_dim
    if layer.out_features == 2 * act:
        return [f"mean {o}" if o < act else f"log-std {o - act}" for o in range(layer.out_features)]
    return [f"output {o}" for o in range(layer.out_features)]


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def edges_figure(
    states: ExplainStates,
    grid: np.ndarray,
    curves: np.ndarray,
    best: dict[tuple[int, int], SymbolicFit],
    units: list[int],
    unit_labels: list[str],
    title: str,
) -> Figure:
    """Rows = state features, columns = `units`: each edge's curve over its data range, the best symbolic fit
    and its R^2 in the corner, and the feature's histogram on the data in light grey along the bottom.

    Margins are fixed in inches rather than solved by a layout engine, which would measure every one of the
    many small panels on each save.
    """
    rows, cols = len(states.names), len(units)
    panel_w, panel_h, gap_w, gap_h = 1.3, 0.62, 0.42, 0.28
    left, right, top, bottom = 2.2, 0.15, 1.05, 0.45
    width = left + cols * panel_w + (cols - 1) * gap_w + right
    height = top + rows * panel_h + (rows - 1) * gap_h + bottom
    figure = _new_figure(width, height, layout=None)
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap_w / panel_w,
        hspace=gap_h / panel_h,
    )
    axes = figure.subplots(rows, cols, squeeze=False, sharex="row")
    for i, name in enumerate(states.names):
        inside = states.values[:, i][(states.values[:, i] >= states.low[i]) & (states.values[:, i] <= states.high[i])]
        counts, edges = np.histogram(inside, bins=30, range=(float(states.low[i]), float(states.high[i]) + 1e-6))
        for column, o in enumerate(units):
            ax = axes[i, column]
            ax.plot(grid[:, i], curves[:, o, i], color="tab:blue", linewidth=1.2)
            lo, hi = ax.get_ylim()
            if counts.max() > 0:
                heights = lo + 0.35 * (hi - lo) * counts / counts.max()
                ax.stairs(heights, edges, baseline=lo, fill=True, color="0.6", alpha=0.3, linewidth=0)
            ax.set_ylim(lo, hi)
            fit = best[(o, i)]
            ax.text(
                0.03,
                0.95,
                f"{fit.name} R²={fit.r2:.2f}",
                transform=ax.transAxes,
                fontsize=5,
                va="top",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
            )
            ax.tick_params(labelsize=5, length=2, pad=1)
            ax.locator_params(nbins=3)
            if column == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
                ax.yaxis.set_label_coords(-gap_w / panel_w, 0.5)
            if i == 0:
                ax.set_title(unit_labels[o], fontsize=7)
    figure.supxlabel(states.axis_label, fontsize="small", y=0.08 / height, va="bottom")
    figure.suptitle(title, fontsize="small", y=1 - 0.08 / height, va="top")
    return figure


def attribution_figure(names: Sequence[str], panels: list[tuple[str, dict[str, np.ndarray]]], title: str) -> Figure:
    """Horizontal bars, one row per state feature ranked by the first panel's first series (top: highest);
    one panel per (title, {label: scores}) entry, bars of several series side by side."""
    order = np.argsort(-panels[0][1][next(iter(panels[0][1]))], kind="stable")
    figure = _new_figure(3.2 * len(panels) + 1.8, 0.28 * len(names) + 1.4)
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    positions = np.arange(len(names))[::-1]
    for index, (ax, (panel_title, series)) in enumerate(zip(axes, panels, strict=True)):
        height = 0.8 / len(series)
        for k, (label, scores) in enumerate(series.items()):
            offset = (len(series) - 1) / 2 * height - k * height
            ax.barh(positions + offset, scores[order], height=height, label=label, color=f"C{k}")
        ax.set_title(panel_title, fontsize="medium")
        ax.set_xlabel("share of the total (sums to 1)", fontsize="small")
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if index == 0:
            ax.set_yticks(positions, [names[i] for i in order], fontsize="small")
        if len(series) > 1:
            figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(series), frameon=False)
    figure.suptitle(title, fontsize="small")
    return figure


def _dataset_name(name: str) -> str:
    """A dataset name without a local file's folders: 'local:/data/hopper-x.hdf5' -> 'local:hopper-x'."""
    source, _, rest = name.partition(":")
    return f"{source}:{Path(rest).stem}" if rest.endswith(".hdf5") else name


def default_out_dir(record: dict[str, Any]) -> Path:
    """figures/explain/<dataset>/<arch>/seed<k>/, the dataset named as a folder (a local file by its stem);
    another algorithm than CQL gets a folder of its own above (figures/explain/td3bc/...), as in the grid store."""
    cell = record["cell"]
    dataset, arch = dataset_slug(_dataset_name(cell["dataset"])), dataset_slug(cell["arch"])
    root = Path("figures") / "explain"
    algo = record_algorithm(record)
    if algo != DEFAULT_ALGORITHM:
        root = root / algo
    return root / dataset / arch / f"seed{cell['seed']}"


def _compare_actor(path: Path, record: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The actor of a second record that must have seen the same states as `record` (same data, same normalization)."""
    actor, other = load_trained_actor(path)
    if other["dataset"].get("sha256") != record["dataset"].get("sha256"):
        raise BenchError(
            f"--compare {path} trained on {other['config']['dataset']} (dataset.sha256 "
            f"{str(other['dataset'].get('sha256'))[:12]}...), not on the data of the explained record "
            f"({record['config']['dataset']}); compare records of the same dataset"
        )
    if bool(other["config"].get("normalize_states", True)) != bool(record["config"].get("normalize_states", True)):
        raise BenchError(
            f"--compare {path}: one run normalized its states and the other did not, so their gradients are "
            "with respect to different inputs; compare runs with the same normalize_states"
        )
    return actor, other


def _scores(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(names, values, strict=True)}


def _symbolic_markdown(edges: list[dict[str, Any]], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "Best fit per first-layer edge: the simplest of linear, quadratic, exp, cubic, tanh, sin whose R² is within "
        f"{R2_TIE:g} of the best, fitted over the 1st-99th percentile of the feature on the data; x is the "
        "state feature as the actor sees it. Spread: standard deviation of the edge's output over the states.",
        "",
        "| feature | unit | best fit | formula | R² | spread |",
        "| :-- | :-- | :-- | :-- | --: | --: |",
    ]
    for edge in edges:
        fit = edge["best_fit"]
        lines.append(
            f"| {edge['feature']} | {edge['unit']} | {fit['name']} | `{fit['formula']}` | {fit['r2']:.4f} | "
            f"{edge['spread']:.4g} |"
        )
    return "\n".join(lines) + "\n"


def explain_record(
    record_path: Path,
    *,
    out_dir: Path | None = None,
    compare: Path | None = None,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    max_states: int = DEFAULT_MAX_STATES,
) -> Explanation:
    """Explain the final actor of a finished record and write the files (module docstring) into `out_dir`
    (default `default_out_dir`). A KAN actor gets edge panels, attribution and symbolic fits; an MLP actor its
    gradient saliency; `compare` adds a second record's saliency on the same states."""
    record_path = Path(record_path)
    actor, record = load_trained_actor(record_path)
    spec = record["architecture"]["actor"]
    layer = None if isinstance(actor.network, MLP) else first_kan_layer(actor, spec)
    states = load_states(record, cache_dir=cache_dir, local_dir=local_dir, max_states=max_states)
    other = _compare_actor(Path(compare), record) if compare is not None else None
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(record)
    cell = record["cell"]
    label = f"{cell['arch']} ({spec}) seed {cell['seed']}"
    where = f"{_dataset_name(cell['dataset'])} ({record['dataset']['label']}), {len(states.values):,} states"

    summary: dict[str, Any] = {
        "record": str(record_path),
        "cell": cell,
        "actor": spec,
        "kan": record["architecture"]["kan"] if layer is not None else None,
        "dataset": {key: record["dataset"].get(key) for key in ("name", "label", "sha256")},
        "states": {
            "count": len(states.values),
            "dataset_transitions": states.dataset_transitions,
            "sample_seed": STATE_SAMPLE_SEED,
            "normalized": states.normalized,
            "percentiles": list(PERCENTILES),
            "low": [float(v) for v in states.low],
            "high": [float(v) for v in states.high],
        },
        "features": list(states.names),
        "attribution": None,
        "saliency": {
            "method": SALIENCY_METHOD,
            "scores": _scores(states.names, gradient_saliency(actor, states.values)),
        },
        "compare": None,
        "edges": [],
    }
    panels: list[tuple[str, dict[str, np.ndarray]]] = []
    saliency_series = {cell["arch"]: np.array(list(summary["saliency"]["scores"].values()))}
    other_saliency = None
    if other is not None:
        other_actor, other_record = other
        other_saliency = gradient_saliency(other_actor, states.values)
        summary["compare"] = {
            "record": str(compare),
            "cell": other_record["cell"],
            "actor": other_record["architecture"]["actor"],
            "saliency": {"method": SALIENCY_METHOD, "scores": _scores(states.names, other_saliency)},
        }
        saliency_series[f"{other_record['cell']['arch']} (compared)"] = other_saliency

    files: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    if layer is not None:
        spread = edge_spread(layer, states.values)
        attribution = feature_attribution(spread)
        summary["attribution"] = {"method": ATTRIBUTION_METHOD, "scores": _scores(states.names, attribution)}
        if other_saliency is not None:
            correlation = float(stats.spearmanr(attribution, other_saliency)[0])
            summary["compare"]["rank_correlation_with_attribution"] = (
                float(correlation) if math.isfinite(correlation) else None
            )
        panels.append(("Edge attribution (first KAN layer)", {cell["arch"]: attribution}))
        grid, curves = edge_curves(layer, states.low, states.high)
        units = _unit_labels(layer, actor)
        best: dict[tuple[int, int], SymbolicFit] = {}
        for i, feature in enumerate(states.names):
            for o in range(layer.out_features):
                fits = symbolic_fits(grid[:, i], curves[:, o, i])
                best[(o, i)] = best_symbolic_fit(fits)
                summary["edges"].append(
                    {
                        "feature": feature,
                        "feature_index": i,
                        "unit": units[o],
                        "unit_index": o,
                        "spread": float(spread[o, i]),
                        "best_fit": asdict(best[(o, i)]),
                        "r2": {fit.name: fit.r2 for fit in fits},
                    }
                )
        shown = sorted(np.argsort(-spread.sum(1), kind="stable")[:MAX_PANEL_UNITS].tolist())
        more = (
            f"; the {len(shown)} of {layer.out_features} units with the largest spread"
            if len(shown) < layer.out_features
            else ""
        )
        title = (
            f"First-layer edges of the KAN actor {label}\non {where}\n"
            f"phi(x) = w_b SiLU(x) + w_s spline(x) over the {states.axis_label};\n"
            f"grey: the data's histogram; corner: the best symbolic fit{more}"
        )
        files += atomic_save_figure(edges_figure(states, grid, curves, best, shown, units, title), out_dir, "edges")
        summary["captions"] = {"edges": title.replace("\n", " ")}
    panels.append(("Gradient saliency |d action / d state|", saliency_series))
    title = f"Which state features the actor {label} responds to\non {where}"
    files += atomic_save_figure(attribution_figure(states.names, panels, title), out_dir, "attribution")
    summary.setdefault("captions", {})["attribution"] = title
    atomic_write_json(out_dir / "explain.json", json.loads(json.dumps(summary)))
    files.append(out_dir / "explain.json")
    if layer is not None:
        atomic_write_text(out_dir / "symbolic.md", _symbolic_markdown(summary["edges"], f"Symbolic fits: {label}"))
        files.append(out_dir / "symbolic.md")
    return Explanation(out_dir, files, summary)
