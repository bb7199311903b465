"""Shared test setup.

TRITON_INTERPRET must be set before anything imports ``fbc_compile.kernels`` (``@triton.jit`` reads it at
import), so it is set here, before the package is imported by any test module.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def fresh_dynamo():
    """An empty dynamo cache and zeroed counters, so the counts a test reads are its own.

    Not autouse: module-scoped fixtures share compiled models across tests, and a reset would drop them.
    """
    import fbc_compile

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    fbc_compile.compilation_counter.clear()
    yield
