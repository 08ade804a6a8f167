"""Architecture specs: which body the actor and the critics get, as text ("kan[4]") and as YAML files.

A network spec names the hidden widths only; `build_network` adds the input and output layers, so "kan[4]" as
a Walker2d actor is the KAN 17 -> 4 -> 12 and "mlp[256,256,256]" as its critic the MLP 23 -> 256 x 3 -> 1.
An architecture pairs an actor spec and a critic spec with the KAN options its KAN layers share. The built-in
architectures live in architectures.yaml beside this module; a user's file adds more (never redefines one).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from bench.errors import BenchError
from bench.nets.kan import KANOptions
from bench.nets.layers import layer_type, layer_types

_SPEC_FORM = (
    "kind[w1,w2,...] with a registered kind (mlp, kan, or a plug-in's) and positive widths, e.g. "
    "'mlp[256,256,256]', 'kan[4]', 'kan[]'"
)
_SPEC_RE = re.compile(r"^\s*(?P<kind>[a-z]+)\s*\[(?P<widths>[^\]]*)\]\s*$")
_ARCH_KEYS = ("actor", "critic", "kan", "description")
_KAN_KEYS = ("grid_size", "spline_order", "grid_range", "input_norm", "base_activation")


@dataclass(frozen=True)
class NetworkSpec:
    """A body: "mlp" or "kan" and its hidden widths (empty: one layer from input to output)."""

    kind: str
    hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        layer_type(self.kind)  # a registered kind, or a BenchError that names them
        if any(not isinstance(w, int) or w < 1 for w in self.hidden):
            raise BenchError(f"network widths {self.hidden!r}: use positive integers")

    def __str__(self) -> str:
        return f"{self.kind}[{','.join(str(w) for w in self.hidden)}]"


def parse_network_spec(text: str) -> NetworkSpec:
    """'mlp[256,256,256]' -> NetworkSpec('mlp', (256, 256, 256)); 'kan[]' has no hidden layer."""
    match = _SPEC_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise BenchError(f"network spec {text!r}: expected {_SPEC_FORM}")
    if match["kind"] not in layer_types():
        try:
            layer_type(match["kind"])
        except BenchError as exc:
            raise BenchError(f"network spec {text!r}: {exc}") from None
    parts = [p.strip() for p in match["widths"].split(",")] if match["widths"].strip() else []
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise BenchError(f"network spec {text!r}: expected {_SPEC_FORM}")
    return NetworkSpec(match["kind"], tuple(int(p) for p in parts))


@dataclass(frozen=True)
class Architecture:
    """A named actor/critic pairing; `kan` applies to every KAN layer of both (unused by MLP bodies)."""

    name: str
    actor: NetworkSpec
    critic: NetworkSpec
    kan: KANOptions = field(default_factory=KANOptions)
    description: str = ""


def build_network(
    spec: NetworkSpec, in_dim: int, out_dim: int, kan: KANOptions, ensemble_size: int | None = None
) -> nn.Module:
    """The whole network in_dim -> spec.hidden... -> out_dim of the spec's layer type (MLP, KAN, a plug-in's).

    With `ensemble_size=E` it holds E independent members and maps (E, ..., in_dim) -> (E, ..., out_dim).
    Every kind keeps its weight layers in `.layers`, the last one producing the output.
    """
    return layer_type(spec.kind).build(in_dim, out_dim, spec.hidden, kan, ensemble_size)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (requires_grad) of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def builtin_architectures_path() -> Path:
    """The package's architectures.yaml."""
    return Path(str(resources.files("bench.nets") / "architectures.yaml"))


def load_architectures(path: Path | None = None) -> dict[str, Architecture]:
    """Architectures of a YAML file (None: the built-in ones): name -> {actor, critic, kan, description}."""
    path = builtin_architectures_path() if path is None else Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchError(f"cannot read architecture file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BenchError(
            f"architecture file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise BenchError(f"architecture file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"architecture file {path}: expected a mapping of name -> {{actor, critic, ...}}")
    return {str(name): parse_architecture(path, str(name), entry) for name, entry in data.items()}


def parse_architecture(path: Path, name: str, entry: Any) -> Architecture:
    where = f"architecture file {path}, architecture {name!r}"
    if not isinstance(entry, dict):
        raise BenchError(f"{where}: expected a mapping with keys {', '.join(_ARCH_KEYS)}")
    unknown = [k for k in entry if k not in _ARCH_KEYS]
    if unknown:
        raise BenchError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_ARCH_KEYS)})")
    missing = [k for k in ("actor", "critic") if k not in entry]
    if missing:
        raise BenchError(f"{where}: missing key {missing[0]!r} (e.g. actor: 'kan[4]', critic: 'mlp[256,256,256]')")
    kan = entry.get("kan") or {}
    if not isinstance(kan, dict):
        raise BenchError(f"{where}: 'kan' must be a mapping with keys among {', '.join(_KAN_KEYS)}")
    unknown = [k for k in kan if k not in _KAN_KEYS]
    if unknown:
        raise BenchError(f"{where}: unknown key 'kan.{unknown[0]}' (allowed: {', '.join(_KAN_KEYS)})")
    try:
        return Architecture(
            name=name,
            actor=parse_network_spec(entry["actor"]),
            critic=parse_network_spec(entry["critic"]),
            kan=KANOptions(**kan),
            description=str(entry.get("description", "") or "").strip(),
        )
    except BenchError as exc:
        raise BenchError(f"{where}: {exc}") from None


def get_architecture(name: str, arch_file: Path | None = None) -> Architecture:
    """The built-in architecture `name`, or one defined in `arch_file`."""
    known = load_architectures()
    if arch_file is not None:
        extra = load_architectures(arch_file)
        clash = sorted(set(extra) & set(known))
        if clash:
            raise BenchError(
                f"architecture file {arch_file} redefines the built-in architecture {clash[0]!r}; give it another name"
            )
        known.update(extra)
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BenchError(f"unknown architecture {name!r}: {hint}known: {', '.join(sorted(known))}")
