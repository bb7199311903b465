"""The eager guard between the compiled head and body, and the state it keeps per cache context.

This is the only code that runs outside compiled pieces on every call. ``CachedGraph`` is what the backend returns
to dynamo; dynamo wraps it in ``torch._dynamo.disable``, so nothing here is traced or guarded: a decision can
change from call to call without a recompile. Its arithmetic is done by the compiled head: the guard hands the
head the context's cached tensors, reads back one number (the ``.item()``, the only host synchronisation per
call) and returns either the skipped call's outputs, which the head computed too, or runs body and tail.

Semantics follow diffusers' ``FBCHeadBlockHook`` step for step (its ``_should_compute_remaining_blocks``):
``diff = mean|r - r_prev| / mean|r_prev|`` against the last *computed* call of the same context; skip when
``diff <= threshold``. Where they differ it is on purpose and safer: a non-finite diff always computes, a shape,
dtype or device change always computes, grad mode never skips, and a reset forgets ``r_prev`` too, so every
generation starts with a full compute. ``state.py`` says which context a call belongs to.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import threading
from typing import Callable, Sequence

import torch

from .passes.split import Wiring
from .state import Call, ModelStates

log = logging.getLogger("fbc_compile")

__all__ = ["ContextStats", "Stats", "CachedShapes", "FirstBlockCache", "CachedGraph"]


#: Decisions and differences kept per context while no pipeline ends the generation (a server's hand-written loop).
HISTORY = 10_000


@dataclasses.dataclass
class ContextStats:
    """What happened in one cache context: counts since the backend was made (or ``reset()``), and the decisions
    (True = computed) and differences (``None`` where nothing was compared) of the current generation: a
    pipeline's end-of-call reset ends it, and the next call starts anew, so that a server's statistics do not grow
    with every call."""

    calls: int = 0
    computes: int = 0
    skips: int = 0
    diffs: list = dataclasses.field(default_factory=list)
    decisions: list = dataclasses.field(default_factory=list)


class Stats(dict):
    """``backend.stats``: context name -> ``ContextStats``, merged over the backend's graphs and model instances."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._ended = False  # a generation ended: the next call starts the next one

    def record(self, context: str, computed: bool, diff: float | None) -> None:
        with self._lock:
            if self._ended:
                self._ended = False
                for stats in self.values():
                    stats.diffs.clear()
                    stats.decisions.clear()
            stats = self.get(context)
            if stats is None:
                stats = self[context] = ContextStats()
            stats.calls += 1
            stats.computes += computed
            stats.skips += not computed
            stats.diffs.append(diff)
            stats.decisions.append(computed)
            if len(stats.decisions) > HISTORY:  # no pipeline ends the generation: keep the latest calls
                del stats.diffs[0], stats.decisions[0]

    def end_generation(self) -> None:
        """A pipeline's end-of-call reset: the decisions stay readable until the next call starts a generation."""
        self._ended = True


class CachedShapes:
    """The shapes the cached tensors of a call must have, known from the call's inputs before the head runs.

    The head compares ``r`` with ``r_prev`` and applies the tail residuals inside its compiled code, so the guard
    hands it tensors of those shapes up front: the context's stored ones when every shape agrees, else zeros.
    (Dtype and device are fixed per graph: dynamo guards them.) In a graph compiled for one input shape the
    shapes are constants; a dynamic-shape graph serves several, and its symbolic sizes are evaluated from the
    inputs, once per input shape seen.
    """

    def __init__(self, examples: Sequence[torch.Tensor], inputs: Sequence) -> None:
        self._dtype_devices = [(t.dtype, t.device) for t in examples]
        symbolic = any(isinstance(s, torch.SymInt) for t in examples for s in t.shape)
        self._static = None if symbolic else tuple(t.shape for t in examples)
        if symbolic:
            self._shape_env = examples[0].fake_mode.shape_env
            self._sizes = [[s.node.expr if isinstance(s, torch.SymInt) else s for s in t.shape] for t in examples]
            # The inputs whose sizes carry symbols: tensors with a symbolic size, and symbolic ints.
            self._sized = [(i, value) for i, value in enumerate(inputs)
                           if isinstance(value, torch.SymInt)
                           or isinstance(value, torch.Tensor) and any(isinstance(s, torch.SymInt) for s in value.shape)]
            self._known: dict[tuple, tuple[torch.Size, ...]] = {}

    def __call__(self, args: Sequence) -> tuple[torch.Size, ...]:
        if self._static is not None:
            return self._static
        key = tuple(args[i].shape if isinstance(args[i], torch.Tensor) else args[i] for i, _ in self._sized)
        shapes = self._known.get(key)
        if shapes is None:
            bindings = self._shape_env.bind_symbols([v for _, v in self._sized], [args[i] for i, _ in self._sized])
            shapes = self._known[key] = tuple(
                torch.Size(s if isinstance(s, int) else int(self._shape_env.replace(s).xreplace(bindings))
                           for s in sizes)
                for sizes in self._sizes)
        return shapes

    def zeros(self, shapes: tuple[torch.Size, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(shape, dtype=dtype, device=device)
                     for shape, (dtype, device) in zip(shapes, self._dtype_devices))

    def votes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A rank's vote to compute, no and yes, on the residual's device, made once."""
        device = self._dtype_devices[0][1]
        return torch.zeros((), device=device), torch.ones((), device=device)


class FirstBlockCache:
    """The per-graph runtime: which context a call belongs to (``state.py``), what the head takes from it, and
    whether the call computes or skips.

    ``conditions`` are the graph-input positions of the conditioning tensors that name implicit contexts;
    ``instance_input`` the position of a parameter, which tells model instances apart.
    """

    def __init__(self, threshold: Callable[[], float], stats: Stats, states: ModelStates,
                 conditions: Sequence[int], instance_input: int, shapes: CachedShapes,
                 across_ranks: bool = False) -> None:
        self._threshold = threshold
        self._stats = stats
        self._states = states
        self._conditions = tuple(conditions)
        self._instance_input = instance_input
        self._shapes = shapes
        # Under context parallelism the head also takes this rank's vote to compute and returns the norm over all
        # ranks, infinite if any rank voted: the guard reads it on every call, so every rank decides alike.
        self._votes = shapes.votes() if across_ranks else None

    def enter(self, args: Sequence) -> tuple[Call, tuple[torch.Tensor, ...]]:
        """The call whose graph inputs are ``args``, and the cached tensors the head takes (zeros where its context
        holds none from this graph and of these shapes: what the head makes of them is then unused)."""
        state = self._states.get(args[self._instance_input])
        state.unreached = 0
        context = state.context(args, self._conditions)
        cache = state.cache(context)
        shapes = self._shapes(args)
        stored = cache.residuals
        comparable = cache.graph is self and all(t.shape == shape for t, shape in zip(stored, shapes))
        cached = stored if comparable else self._shapes.zeros(shapes)
        if self._votes is not None:
            cached += (self._votes[not comparable or torch.is_grad_enabled()],)
        return Call(context, cache, comparable), cached

    def should_compute(self, call: Call, diff: torch.Tensor) -> bool:
        """The guard: ``diff`` is the head's difference norm of block 0's residual against what ``enter`` gave."""
        if self._votes is None and (torch.is_grad_enabled() or not call.comparable):
            compute, diff = True, None  # caching is for inference: never change what autograd sees
        else:
            diff = diff.item()
            compute = not diff <= self._threshold()  # NaN compares False: a non-finite diff computes
            if not call.comparable:
                diff = None  # (across ranks: this rank voted to compute, having nothing to compare with)
        self._stats.record(call.context, compute, diff)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fbc %s: %s (diff %s, threshold %s)", call.context, "compute" if compute else "skip",
                      "-" if diff is None else f"{diff:.5f}", self._threshold())
        return compute

    def store(self, call: Call, residuals: Sequence[torch.Tensor]) -> None:
        """Keep a computed call's block-0 residual and tail residuals for its context's next calls."""
        if not torch.is_grad_enabled():
            call.cache.residuals, call.cache.graph = tuple(t.contiguous() for t in residuals), self


def _gather(positions) -> Callable[[tuple], tuple]:
    """``values -> tuple(values[i] for i in positions)``, at C speed."""
    positions = tuple(positions)
    if len(positions) == 1:
        (i,) = positions
        return lambda values: (values[i],)
    return operator.itemgetter(*positions) if positions else lambda values: ()


class CachedGraph:
    """What the backend hands dynamo: head, guard, then body and tail or nothing more.

    A call is a few gathers around the compiled calls (``Wiring`` says where each piece finds its inputs in the
    values of the call so far), with no generated ``forward`` or ``nn.Module`` call in between. This runs on
    every denoising step, the skipped ones too, where little else runs; on a GPU the Python after the
    ``.item()`` is time the device sits idle.

    Computing: runs body and tail, and stores block 0's residual and the tail residuals the tail returned.
    Skipping: returns what the head computed for a skipped call (the tail applied to ``identity_body`` of block
    0's outputs + the stored tail residuals), so a skipped call is the head's one compiled call.
    """

    def __init__(self, wiring: Wiring, pieces: Sequence[Callable], cache: FirstBlockCache) -> None:
        self.head, self.body, self.tail = pieces
        self._head_args, self._body_args, self._tail_args = map(_gather, wiring.piece_args)
        self._outputs = _gather(wiring.outputs)
        self._skip_outputs = _gather(wiring.skip_outputs)
        self._diff = wiring.diff
        self._stored = _gather((wiring.residual, *wiring.tail_residuals))
        self.cache = cache

    def __call__(self, *args):
        cache = self.cache
        call, cached = cache.enter(args)
        values = (*args, *cached)
        values += tuple(self.head(*self._head_args(values)))
        if not cache.should_compute(call, values[self._diff]):
            return self._skip_outputs(values)
        values += tuple(self.body(*self._body_args(values)))
        values += tuple(self.tail(*self._tail_args(values)))
        cache.store(call, self._stored(values))
        return self._outputs(values)
