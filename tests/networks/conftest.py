"""Network tests run on one intra-op thread.

The tensors here are tiny: a second OpenMP thread only adds synchronisation, and on a busy shared machine its
spin-waiting made single forwards up to ~15x slower (measured: 10 tiny forwards 40.6 s wall with 2 threads,
2.5 s with 1). The previous setting is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
