"""Tests that need a GPU: marked `cuda` (`pytest -m cuda` selects them, as `python -m benchmarks.gpu_check` does)
and skipped where torch sees no CUDA device."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
_skip_without_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (runs on a GPU box)")
CUDA_MARKS = (pytest.mark.cuda, _skip_without_cuda)


def needs_cuda(test):
    """Mark `test` as a GPU test: selected by `-m cuda`, skipped without a CUDA device."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


# The devices a test runs on when parametrized over `devices`: the CPU always, CUDA as a marked GPU test.
devices = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]
