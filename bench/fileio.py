"""Atomic writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_DPI = 150
PNG_COLORS = 256  # a palette PNG: a third of the RGBA file's size for line plots, indistinguishable on screen


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for a writer that needs a file name (h5py); it becomes `path` on success.

    The file is synced before the rename; on an error or interrupt it is removed and `path` is left alone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        # mkstemp creates the file 0600; give it the mode an ordinary open() would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_write_npz(path: Path, **arrays: Any) -> None:
    """`numpy.savez_compressed`, atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """`torch.save`, atomically: a checkpoint killed mid-write never replaces the previous one."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_figure(figure: Figure, directory: Path, stem: str) -> list[Path]:
    """`<stem>.pdf` and `<stem>.png` of a matplotlib figure, each written atomically, with no dates in them, so an
    unchanged figure gives unchanged files. The PNG is a palette PNG (`palette_png`); the PDF keeps the exact
    vector figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    pdf = directory / f"{stem}.pdf"
    atomic_write_bytes(pdf, buffer.getvalue())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    png = directory / f"{stem}.png"
    atomic_write_bytes(png, palette_png(buffer.getvalue()))
    return [pdf, png]


def palette_png(png: bytes) -> bytes:
    """A PNG image reduced to a palette of PNG_COLORS colours (median cut, no dithering), over white where it was
    translucent: plots of a few line colours and their translucent bands lose nothing visible, and the file takes
    a third of the full-colour one's space."""
    from PIL import Image

    rendered = Image.open(io.BytesIO(png)).convert("RGBA")
    opaque = Image.alpha_composite(Image.new("RGBA", rendered.size, "white"), rendered).convert("RGB")
    palette = opaque.quantize(colors=PNG_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
