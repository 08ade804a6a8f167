"""Atomic writes: the new file appears whole with an ordinary mode, or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.data.hdf5 import write_d4rl_hdf5
from bench.fileio import atomic_output, atomic_write_bytes


def ordinary_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_written_files_get_the_mode_of_an_ordinary_open(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    write_d4rl_hdf5(tmp_path / "b.hdf5", {"rewards": np.zeros(3, dtype=np.float32)})
    for name in ("a.bin", "b.hdf5"):
        assert (tmp_path / name).stat().st_mode & 0o777 == ordinary_mode()
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.hdf5"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_saved_figure_is_a_pdf_and_a_palette_png_that_looks_like_the_full_colour_render(tmp_path: Path) -> None:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    from bench.fileio import PNG_COLORS, PNG_DPI, atomic_save_figure

    figure = Figure(figsize=(4, 3))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    x = np.linspace(0, 10, 200)
    for shift, color in enumerate(("C0", "C1", "C2", "C3")):
        ax.plot(x, np.sin(x + shift), color=color)
        ax.fill_between(x, np.sin(x + shift) - 0.5, np.sin(x + shift) + 0.5, color=color, alpha=0.2, linewidth=0)
    paths = atomic_save_figure(figure, tmp_path / "f", "curves")
    assert paths == [tmp_path / "f" / "curves.pdf", tmp_path / "f" / "curves.png"]
    assert paths[0].read_bytes()[:5] == b"%PDF-" and sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "curves.pdf",
        "curves.png",
    ]
    full = io.BytesIO()
    figure.savefig(full, format="png", dpi=PNG_DPI)
    reference = np.asarray(Image.open(full).convert("RGB"), dtype=int)
    saved = Image.open(paths[1])
    assert saved.mode == "P" and len(saved.getcolors()) <= PNG_COLORS
    assert paths[1].stat().st_size < len(full.getvalue()) / 2
    # The overlapping translucent bands make thousands of colours; the palette keeps every pixel close to its own.
    difference = np.abs(np.asarray(saved.convert("RGB"), dtype=int) - reference).max(axis=2)
    assert len(np.unique(reference.reshape(-1, 3), axis=0)) > PNG_COLORS
    assert difference.mean() < 1.0 and np.percentile(difference, 99) < 16
    # No dates: the same figure gives the same bytes.
    first = [path.read_bytes() for path in paths]
    atomic_save_figure(figure, tmp_path / "f", "curves")
    assert [path.read_bytes() for path in paths] == first
