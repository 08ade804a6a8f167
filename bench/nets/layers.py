"""Layer types an architecture spec can name (`mlp[256]`, `kan[4]`, and any registered from outside).

A layer type is a builder `build(in_dim, out_dim, hidden, kan, ensemble_size) -> nn.Module` of a whole network
in_dim -> hidden... -> out_dim. The network it returns must:

- map (..., in_dim) to (..., out_dim); with `ensemble_size=E`, map (E, ..., in_dim) to (E, ..., out_dim) with E
  independent members whose parameters and buffers are the single network's with a leading E dim (the critics'
  ensemble and seeds side by side stack and slice members along that dim);
- keep its weight layers in `.layers` (an `nn.ModuleList`), the last one producing the output: CORL's
  last-layer init scales that layer's parameters by 1e-2, so a fresh actor and fresh critics output about 0.

`kan` is the architecture's `KANOptions` (a plug-in may read them or ignore them). Registering a type makes
`name[w1,w2]` a valid body everywhere: architecture files, grid files, the trainer and the report, which never
look at layers themselves. A plug-in file calls `register_layer_type`; the environment variable
`BENCH_LAYER_PLUGINS` (module names or .py paths, comma-separated) imports plug-ins in every process that
builds networks, grid workers included, since they inherit the environment.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.nets.kan import KANOptions

Builder = Callable[[int, int, tuple[int, ...], "KANOptions", "int | None"], nn.Module]
PLUGINS_VARIABLE = "BENCH_LAYER_PLUGINS"
_NAME = re.compile(r"^[a-z]+$")


@dataclass(frozen=True)
class LayerType:
    """A named network builder (see the module docstring for its contract)."""

    name: str
    build: Builder
    description: str = ""


_TYPES: dict[str, LayerType] = {}


def register_layer_type(name: str, build: Builder, description: str = "") -> None:
    """Make `name[...]` a network spec built by `build`; a name is registered once (built-ins included)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BenchError(f"layer type name {name!r}: use lowercase letters only (it is written as name[w1,w2])")
    if name in _TYPES:
        raise BenchError(f"layer type {name!r} is already registered; give the new one another name")
    _TYPES[name] = LayerType(name, build, description)


def layer_type(name: str) -> LayerType:
    """The registered layer type `name` (BenchError naming the registered ones otherwise)."""
    if name not in _TYPES:
        raise BenchError(
            f"network kind {name!r}: use one of {', '.join(sorted(_TYPES))} (more are registered by plug-ins "
            f"named in ${PLUGINS_VARIABLE})"
        )
    return _TYPES[name]


def layer_types() -> list[str]:
    """The registered layer type names."""
    return sorted(_TYPES)


def load_plugins(value: str | None = None) -> None:
    """Import the plug-ins named in `value` (default: $BENCH_LAYER_PLUGINS): module names or .py file paths."""
    value = os.environ.get(PLUGINS_VARIABLE, "") if value is None else value
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        if entry.endswith(".py"):
            path = Path(entry).resolve()
            module_name = f"bench_layer_plugin_{path.stem}"
            if module_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise BenchError(f"${PLUGINS_VARIABLE}: {entry} is not a readable Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(entry)
            except ImportError as exc:
                raise BenchError(f"${PLUGINS_VARIABLE}: cannot import {entry!r} ({exc})") from None


def _build_mlp(
    in_dim: int, out_dim: int, hidden: tuple[int, ...], kan: KANOptions, ensemble_size: int | None
) -> nn.Module:
    from bench.nets.mlp import MLP

    return MLP(in_dim, out_dim, hidden, ensemble_size=ensemble_size)


def _build_kan(
    in_dim: int, out_dim: int, hidden: tuple[int, ...], kan: KANOptions, ensemble_size: int | None
) -> nn.Module:
    from bench.nets.kan import KAN

    return KAN(in_dim, out_dim, hidden, kan, ensemble_size=ensemble_size)


def _build_rbf(
    in_dim: int, out_dim: int, hidden: tuple[int, ...], kan: KANOptions, ensemble_size: int | None
) -> nn.Module:
    from bench.nets.rbf import RBFKAN

    return RBFKAN(in_dim, out_dim, hidden, kan, ensemble_size=ensemble_size)


register_layer_type("mlp", _build_mlp, "ReLU MLP: nn.Linear layers (EnsembleLinear for an ensemble)")
register_layer_type("kan", _build_kan, "KAN: KANLinear layers on a uniform B-spline grid (SPEC 5)")
register_layer_type("rbf", _build_rbf, "FastKAN-style KAN: Gaussian bases after a LayerNorm (bench/nets/rbf.py)")
load_plugins()
