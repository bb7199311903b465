"""Counting what dynamo and the backend compiled, for regression tests and benchmarks.

``torch._dynamo.utils.counters`` and the compile metrics are process-wide and survive ``torch._dynamo.reset()``;
see ``shared/notes/torch-internals.md`` for which counters can be trusted.
"""

from __future__ import annotations

import torch

from .backend import compilation_counter

__all__ = ["clear_counts", "compile_counts", "COUNT_KEYS"]

#: The counts regression tests pin exactly.
COUNT_KEYS = ("dynamo_graphs", "pieces", "frames", "recompiles", "graph_breaks", "frames_given_up")


def clear_counts() -> None:
    """Forget every compiled graph and zero the counters (dynamo's counters survive ``torch._dynamo.reset``)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    # The compile metrics are a deque of the last 64 frames by default, also kept across resets.
    torch._dynamo.utils.set_compilation_metrics_limit(100_000)
    torch._dynamo.utils.clear_compilation_metrics()
    compilation_counter.clear()


def compile_counts() -> dict:
    """What dynamo compiled since :func:`clear_counts`.

    ``dynamo_graphs``: graphs handed to a backend (``unique_graphs``); ``pieces``: graphs compiled through
    AOTAutograd (inductor's unit of compilation: fbc compiles the head, one per later block and the tail);
    ``frames``: frame compilations (compile ids); ``recompiles``: compile ids ``n/k`` with ``k > 0`` (a frame
    compiled again after a guard failed); ``graph_breaks``: ``counters["graph_break"]`` (dynamo notes it misses
    some) and ``graph_breaks_in_metrics``: the sum of the compile metrics' ``num_graph_breaks``.
    """
    from torch._dynamo.utils import counters, get_compilation_metrics

    metrics = get_compilation_metrics()
    recompiles = [m for m in metrics if m.compile_id and not m.compile_id.endswith("/0")]
    failed = [m for m in metrics if m.fail_type]
    return dict(
        dynamo_graphs=int(counters["stats"]["unique_graphs"]),
        pieces=int(counters["aot_autograd"]["total"]),
        frames=len(metrics),
        recompiles=len(recompiles),
        graph_breaks=int(sum(counters["graph_break"].values())),
        graph_breaks_in_metrics=int(sum(m.num_graph_breaks or 0 for m in metrics)),
        frames_given_up=len(failed),
        fbc=dict(compilation_counter),
        compile_s=float(sum(m.entire_frame_compile_time_s or 0.0 for m in metrics)),
        recompile_reasons=sorted({(m.recompile_reason or "").strip().splitlines()[0][:160]
                                  for m in recompiles if m.recompile_reason}),
        graph_break_reasons=sorted({reason.strip().splitlines()[0][:160] for reason in counters["graph_break"]}),
    )
