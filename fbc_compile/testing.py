"""Count what ``torch.compile`` compiles, for your own regression tests (as vLLM's ``compilation_counter``)::

    from fbc_compile.testing import count_compiles

    with count_compiles() as counts:
        pipe(prompt, num_inference_steps=28)
    counts.expect(graphs=1, recompiles=0, graph_breaks=0)

The counts are what changed inside the ``with`` block, read from dynamo's process-wide counters and compile
metrics (which ``torch._dynamo.reset()`` does not clear) and from fbc's own ``compilation_counter``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch
from torch._dynamo.utils import counters, get_compilation_metrics

from .backend import compilation_counter

__all__ = ["CompileCounts", "count_compiles"]

# Dynamo keeps the compile metrics of its last 64 frames by default; a test may compile more.
_METRICS_KEPT = 100_000


@dataclasses.dataclass
class CompileCounts:
    """What dynamo and the backend compiled in a ``count_compiles()`` block.

    ``graphs``: graphs dynamo handed a backend; ``pieces``: graphs compiled through AOTAutograd (inductor's unit:
    fbc compiles a head, one piece per block after the first, and a tail); ``frames``: frame compilations;
    ``recompiles``: frames compiled again after a guard failed (their reasons in ``recompile_reasons``);
    ``graph_breaks``; ``frames_given_up``: frames dynamo could not compile, which then run eagerly; ``fbc``: fbc's
    own counts (``graphs``, ``split_graphs``, ``pieces``, ``fallbacks``).
    """

    graphs: int = 0
    pieces: int = 0
    frames: int = 0
    recompiles: int = 0
    graph_breaks: int = 0
    frames_given_up: int = 0
    fbc: dict = dataclasses.field(default_factory=dict)
    recompile_reasons: list = dataclasses.field(default_factory=list)
    graph_break_reasons: list = dataclasses.field(default_factory=list)

    def expect(self, **expected) -> None:
        """Assert the named counts, with every difference in the message (``expect(graphs=1, recompiles=0)``)."""
        unknown = set(expected) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown counts {sorted(unknown)}: choose from {[f.name for f in dataclasses.fields(self)]}")
        wrong = {name: (getattr(self, name), value) for name, value in expected.items() if getattr(self, name) != value}
        if wrong:
            details = ", ".join(f"{name} {got} (expected {want})" for name, (got, want) in wrong.items())
            reasons = self.recompile_reasons + self.graph_break_reasons
            raise AssertionError(f"compile counts: {details}" + (f"; reasons: {reasons}" if reasons else ""))


@contextlib.contextmanager
def count_compiles() -> Iterator[CompileCounts]:
    """Count what is compiled inside the block; the counts are filled in when it ends."""
    torch._dynamo.utils.set_compilation_metrics_limit(_METRICS_KEPT)
    graphs, pieces = counters["stats"]["unique_graphs"], counters["aot_autograd"]["total"]
    breaks = dict(counters["graph_break"])
    metrics_before = len(get_compilation_metrics())
    fbc_before = dict(compilation_counter)
    counts = CompileCounts()
    try:
        yield counts
    finally:
        metrics = get_compilation_metrics()[metrics_before:]
        recompiles = [m for m in metrics if m.compile_id and not str(m.compile_id).strip("[]").endswith("/0")]
        new_breaks = {reason: n - breaks.get(reason, 0) for reason, n in counters["graph_break"].items()
                      if n > breaks.get(reason, 0)}
        counts.graphs = int(counters["stats"]["unique_graphs"] - graphs)
        counts.pieces = int(counters["aot_autograd"]["total"] - pieces)
        counts.frames = len(metrics)
        counts.recompiles = len(recompiles)
        counts.graph_breaks = int(sum(new_breaks.values()))
        counts.frames_given_up = sum(1 for m in metrics if m.fail_type)
        counts.fbc = {key: value - fbc_before.get(key, 0) for key, value in compilation_counter.items()
                      if value != fbc_before.get(key, 0)}
        counts.recompile_reasons = sorted({(m.recompile_reason or "").strip().splitlines()[0][:160]
                                           for m in recompiles if m.recompile_reason})
        counts.graph_break_reasons = sorted(reason.strip().splitlines()[0][:160] for reason in new_breaks)
