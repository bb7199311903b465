"""The eager guard between the compiled head and body, and the state it keeps per cache context.

This is the only code that runs outside compiled pieces on every call. ``CachedGraph`` is what the backend returns
to dynamo; dynamo wraps it in ``torch._dynamo.disable``, so nothing here is traced or guarded: a decision can
change from call to call without a recompile. Its arithmetic is done by the compiled head: the guard hands the
head the residual to compare with, reads back one number (the ``.item()``, the only host synchronisation per
call) and, on a skipped call, adds one cached residual per stream.

Semantics follow diffusers' ``FBCHeadBlockHook`` step for step (see ``shared/notes/fbc-semantics.md``):
``diff = mean|r - r_prev| / mean|r_prev|`` against the last *computed* call of the same context; skip when
``diff <= threshold``. Where they differ it is on purpose and safer: a non-finite diff always computes, a shape,
dtype or device change always computes, grad mode never skips, and a reset forgets ``r_prev`` too, so every
generation starts with a full compute.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import weakref
from typing import Callable, Sequence

import torch

from .passes.split import BODY, FirstBlockSplit

log = logging.getLogger("fbc_compile")

__all__ = ["ContextStats", "ResidualCache", "ResidualShape", "FirstBlockCache", "CachedGraph"]


@dataclasses.dataclass
class ContextStats:
    """What happened in one cache context. ``diffs[i]`` is ``None`` where no comparison was made."""

    calls: int = 0
    computes: int = 0
    skips: int = 0
    diffs: list = dataclasses.field(default_factory=list)
    decisions: list = dataclasses.field(default_factory=list)  # True = computed, False = skipped

    def record(self, computed: bool, diff: float | None) -> None:
        self.calls += 1
        self.computes += computed
        self.skips += not computed
        self.diffs.append(diff)
        self.decisions.append(computed)


class ResidualCache:
    """What one cache context remembers of its last fully computed call."""

    def __init__(self) -> None:
        self.block0_residual: torch.Tensor | None = None
        self.tail_residuals: tuple[torch.Tensor, ...] | None = None
        # (size, stride) of each value the body handed on: the compiled tail asserts its inputs' strides, and
        # a body output can be a strided view (HunyuanVideo's is a slice of the single blocks' joint sequence).
        self.layouts: tuple[tuple[torch.Size, tuple[int, ...]], ...] | None = None

    def clear(self) -> None:
        self.block0_residual = self.tail_residuals = self.layouts = None


class ResidualShape:
    """The shape block 0's residual will have in a call, known from the call's inputs before the head runs.

    The head compares ``r`` with ``r_prev`` inside its compiled code, so the guard hands it a previous residual of
    ``r``'s shape up front: the stored one when the shapes agree, else zeros. (Dtype and device are fixed per
    graph: dynamo guards them.) In a graph compiled for one input shape the shape is a constant; a dynamic-shape
    graph serves several, and its symbolic sizes are evaluated from the inputs, once per input shape seen.
    """

    def __init__(self, previous: torch.Tensor, inputs: Sequence) -> None:
        self.dtype, self.device = previous.dtype, previous.device
        self._static = None if any(isinstance(s, torch.SymInt) for s in previous.shape) else previous.shape
        if self._static is None:
            self._shape_env = previous.fake_mode.shape_env
            self._sizes = [s.node.expr if isinstance(s, torch.SymInt) else s for s in previous.shape]
            # The inputs whose sizes carry symbols: tensors with a symbolic size, and symbolic ints.
            self._sized = [(i, value) for i, value in enumerate(inputs)
                           if isinstance(value, torch.SymInt)
                           or isinstance(value, torch.Tensor) and any(isinstance(s, torch.SymInt) for s in value.shape)]
            self._known: dict[tuple, torch.Size] = {}

    def __call__(self, args: Sequence) -> torch.Size:
        if self._static is not None:
            return self._static
        key = tuple(args[i].shape if isinstance(args[i], torch.Tensor) else args[i] for i, _ in self._sized)
        size = self._known.get(key)
        if size is None:
            bindings = self._shape_env.bind_symbols([v for _, v in self._sized], [args[i] for i, _ in self._sized])
            size = self._known[key] = torch.Size(
                int(self._shape_env.replace(s).xreplace(bindings)) if not isinstance(s, int) else s
                for s in self._sizes)
        return size

    def zeros(self, size: torch.Size) -> torch.Tensor:
        return torch.zeros(size, dtype=self.dtype, device=self.device)


class ModelState:
    """The cache state of one model instance: its contexts and where its denoising loop is.

    One compiled graph can serve several instances of a model class (parameters are graph inputs, and dynamo
    does not guard on the module's identity: Wan 2.2's two transformers share a graph), so the graph's state is
    kept per instance, told apart by the identity of one of their parameters.
    """

    def __init__(self) -> None:
        self.contexts: dict[str, ResidualCache] = {}
        self.previous_latents: tuple = ()
        self.branch = 0


class FirstBlockCache:
    """The per-graph runtime: which context a call belongs to, and whether it computes or skips.

    The context of a call is, in order: the name of the diffusers ``cache_context`` it runs in (pipelines set
    "cond", "uncond", ...); else an implicit branch. The implicit rule: a call that receives the very same latent
    tensor as the previous call, unmodified (same object, same version counter), is the next branch of the same
    denoising step (cond, then uncond: "branch0", "branch1", ...); any other call starts a new step at
    "branch0". A loop that calls the model for cond then uncond on the same latents therefore never compares one
    branch's residual with the other's, with no change to the loop.
    """

    def __init__(self, threshold: Callable[[], float], stats: dict[str, ContextStats],
                 latent_inputs: Sequence[int], instance_input: int | None, residual_shape: ResidualShape) -> None:
        self._threshold = threshold
        self._stats = stats
        self._latent_inputs = tuple(latent_inputs)
        self._instance_input = instance_input
        self._residual_shape = residual_shape
        self.explicit_context: Callable[[], str | None] = lambda: None  # set by diffusers_context.attach
        self._models: dict[int, tuple[weakref.ref | None, ModelState]] = {}
        self.context = "branch0"
        self.active = ResidualCache()
        self.comparable = False  # whether the active context holds a residual of this call's shape

    def _model(self, args: Sequence) -> ModelState:
        param = args[self._instance_input] if self._instance_input is not None else None
        key = id(param)
        ref, model = self._models.get(key, (None, None))
        if model is None or (ref is not None and ref() is not param):  # new, or a dead id reused
            ref = weakref.ref(param) if param is not None else None
            model = ModelState()
            self._models[key] = (ref, model)
        return model

    def enter(self, args: Sequence) -> torch.Tensor:
        """Select the context of the call whose graph inputs are ``args``; return the residual for the head to
        compare with (zeros where the context holds none of this call's shape: that difference is not used)."""
        model = self._model(args)
        latents = [args[i] for i in self._latent_inputs]
        same_step = bool(latents) and len(latents) == len(model.previous_latents) and all(
            ref() is t and version == t._version for (ref, version), t in zip(model.previous_latents, latents)
        )
        model.branch = model.branch + 1 if same_step else 0
        model.previous_latents = tuple((weakref.ref(t), t._version) for t in latents)
        self.context = self.explicit_context() or f"branch{model.branch}"
        cache = model.contexts.get(self.context)
        if cache is None:
            cache = model.contexts[self.context] = ResidualCache()
        self.active = cache
        size = self._residual_shape(args)
        previous = cache.block0_residual
        self.comparable = previous is not None and previous.shape == size
        return previous if self.comparable else self._residual_shape.zeros(size)

    def should_compute(self, diff: torch.Tensor) -> bool:
        """The guard: ``diff`` is the head's difference norm of block 0's residual against what ``enter`` gave."""
        if torch.is_grad_enabled():
            compute, diff = True, None  # caching is for inference: never change what autograd sees
        elif not self.comparable:
            compute, diff = True, None
        else:
            diff = diff.item()
            compute = not diff <= self._threshold()  # NaN compares False: a non-finite diff computes
        stats = self._stats.get(self.context)
        if stats is None:
            stats = self._stats[self.context] = ContextStats()
        stats.record(compute, diff)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fbc %s: %s (diff %s, threshold %s)", self.context, "compute" if compute else "skip",
                      "-" if diff is None else f"{diff:.5f}", self._threshold())
        return compute

    def store(self, residual: torch.Tensor, outputs: Sequence[torch.Tensor],
              tail_residuals: Sequence[torch.Tensor]) -> None:
        if not torch.is_grad_enabled():
            cache = self.active
            # Contiguous, as the head's r_prev input is compiled for.
            cache.block0_residual, cache.tail_residuals = residual.contiguous(), tuple(tail_residuals)
            cache.layouts = tuple((out.size(), out.stride()) for out in outputs)

    def cached_tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds between calls, all instances and contexts (for memory accounting)."""
        return [t for _, model in self._models.values() for cache in model.contexts.values()
                for t in (cache.block0_residual, *(cache.tail_residuals or ())) if t is not None]

    def reset(self) -> None:
        """Forget every context's cached tensors (they are freed here), keeping the statistics."""
        for _, model in self._models.values():
            for cache in model.contexts.values():
                cache.clear()
        self._models.clear()
        self.active = ResidualCache()


def _gather(positions) -> Callable[[tuple], tuple]:
    """``values -> tuple(values[i] for i in positions)``, at C speed."""
    positions = tuple(positions)
    if len(positions) == 1:
        (i,) = positions
        return lambda values: (values[i],)
    return operator.itemgetter(*positions) if positions else lambda values: ()


class CachedGraph:
    """What the backend hands dynamo: head, guard, body or skip, tail, one after the other.

    The split graph says which graph inputs and piece outputs each compiled piece takes and which values the graph
    returns. That wiring is read once into index tuples over one growing tuple of values (the graph inputs and
    ``r_prev``, then each piece's outputs), so a call is three gathers around the three compiled calls, with no
    generated ``forward`` or ``nn.Module`` call in between. This runs on every denoising step, the skipped ones
    too, where little else runs; on a GPU the Python between the ``.item()`` and the tail's launch is time the
    device sits idle.

    Computing: runs the body (which also returns the tail residuals) and stores them. Skipping: each value the body
    hands on is its block-0 counterpart plus the stored tail residual, laid out as the body returned it last time
    (the compiled tail asserts its inputs' strides).
    """

    def __init__(self, graph: torch.fx.GraphModule, cache: FirstBlockCache, split: FirstBlockSplit) -> None:
        position = {node: i for i, node in enumerate(graph.graph.find_nodes(op="placeholder"))}
        offset = len(position)
        calls = graph.graph.find_nodes(op="call_module")  # head, body, tail, in graph order
        pieces, gathers = [], []
        for call, width in zip(calls, split.piece_outputs):
            pieces.append(getattr(graph, call.target).submod)  # the compiled callable inside SubmodCompiler's wrapper
            gathers.append(_gather(position[arg] for arg in call.args))
            for user in call.users:  # operator.getitem(call, k)
                position[user] = offset + user.args[1]
            offset += width
        self.head, self.body, self.tail = pieces
        self._head_args, self._body_args, self._tail_args = gathers
        self._outputs = _gather(position[node] for node in graph.graph.output_node().args[0])
        self._residual, self._diff = split.residual_output, split.diff_output
        self._streams, self._body_width = split.streams, split.piece_outputs[BODY]
        self.cache = cache

    def __call__(self, *args):
        cache = self.cache
        values = (*args, cache.enter(args))
        head = tuple(self.head(*self._head_args(values)))
        values += head
        body_inputs = self._body_args(values)
        if cache.should_compute(head[self._diff]):
            body = tuple(self.body(*body_inputs))
            cache.store(head[self._residual], [body[o] for o, _, _ in self._streams],
                        [body[r] for _, _, r in self._streams])
        else:
            body = self._skip(body_inputs)
        values += body
        values += tuple(self.tail(*self._tail_args(values)))
        return self._outputs(values)

    def _skip(self, body_inputs: tuple) -> tuple:
        cached = self.cache.active
        outputs = [None] * self._body_width
        for (out, inp, res), tail_residual, (size, stride) in zip(self._streams, cached.tail_residuals,
                                                                  cached.layouts):
            block0_output = body_inputs[inp]
            outputs[out] = torch.add(block0_output, tail_residual, out=block0_output.new_empty_strided(size, stride))
            outputs[res] = tail_residual
        return tuple(outputs)
