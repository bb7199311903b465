"""Shared test setup.

TRITON_INTERPRET must be set before anything imports ``fbc_compile.kernels`` (``@triton.jit`` reads it at
import), so it is set here, before the package is imported by any test module.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Two threads at most, shared among pytest-xdist's workers (`make test` runs two): more only oversubscribes CI's cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="module", autouse=True)
def _fresh_dynamo_per_module():
    """Each test module starts from an empty dynamo cache. Every diffusers transformer's ``forward`` is the same
    function (diffusers' PEFT wrapper), so models compiled by earlier modules would otherwise use up dynamo's
    per-function limit of compiled entries and change what later modules count. Dynamo's counters and compile
    metrics survive its reset, so they are cleared too."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch._dynamo.utils.clear_compilation_metrics()
    yield


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


# Modules run in this order (the others after them): test_counts first, then the longest, so that `make test`'s
# two workers (`-n 2 --dist loadfile --no-loadscope-reorder`, each taking whole modules in this order) end together.
FIRST = ("tests/test_counts.py", "tests/test_bench_smoke.py", "tests/test_models.py", "tests/test_hardening.py")


def pytest_collection_modifyitems(config, items):
    """Run test_counts.py first: the diffusers hook's compile counts it pins depend on what dynamo compiled
    earlier in the process (measured fresh they are as pinned; after other tests compiled diffusers models,
    fewer frames are recompiled)."""
    def rank(item) -> int:
        module = item.nodeid.split("::")[0]
        return FIRST.index(module) if module in FIRST else len(FIRST)

    items.sort(key=rank)
