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
