"""The eager guard between the compiled head and body, and the state it keeps per cache context.

This is the only code that runs outside compiled pieces on every call. ``CachedGraph`` is what the backend returns
to dynamo; dynamo wraps it in ``torch._dynamo.disable``, so nothing here is traced or guarded: a decision can
change from call to call without a recompile. Its arithmetic is done by the compiled head: the guard hands the
head the context's cached tensors, reads back one number (the ``.item()``, the only host synchronisation per
call) and returns either the skipped call's outputs, which the head computed too, or runs body and tail.

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

from .passes.split import Wiring

log = logging.getLogger("fbc_compile")

__all__ = ["ContextStats", "ResidualCache", "CachedShapes", "FirstBlockCache", "CachedGraph"]


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
    """What one cache context remembers of its last fully computed call: block 0's residual, then the tail
    residuals, in the order the head takes them (contiguous, as it is compiled for)."""

    def __init__(self) -> None:
        self.residuals: tuple[torch.Tensor, ...] = ()

    def clear(self) -> None:
        self.residuals = ()


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
                 latent_inputs: Sequence[int], instance_input: int | None, shapes: CachedShapes,
                 across_ranks: bool = False) -> None:
        self._threshold = threshold
        # Under context parallelism the head also takes this rank's vote to compute and returns the norm over all
        # ranks, infinite if any rank voted: the guard reads it on every call, so every rank decides alike.
        self._votes = shapes.votes() if across_ranks else None
        self._stats = stats
        self._latent_inputs = tuple(latent_inputs)
        self._instance_input = instance_input
        self._shapes = shapes
        self.explicit_context: Callable[[], str | None] = lambda: None  # set by diffusers_context.attach
        self._models: dict[int, tuple[weakref.ref | None, ModelState]] = {}
        self.context = "branch0"
        self.active = ResidualCache()
        self.comparable = False  # whether the active context holds residuals of this call's shapes

    def _model(self, args: Sequence) -> ModelState:
        param = args[self._instance_input] if self._instance_input is not None else None
        key = id(param)
        ref, model = self._models.get(key, (None, None))
        if model is None or (ref is not None and ref() is not param):  # new, or a dead id reused
            ref = weakref.ref(param) if param is not None else None
            model = ModelState()
            self._models[key] = (ref, model)
        return model

    def enter(self, args: Sequence) -> tuple[torch.Tensor, ...]:
        """Select the context of the call whose graph inputs are ``args``; return the cached tensors the head
        takes (zeros where the context holds none of this call's shapes: what the head makes of them is unused)."""
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
        shapes = self._shapes(args)
        stored = cache.residuals
        self.comparable = bool(stored) and all(t.shape == shape for t, shape in zip(stored, shapes))
        cached = stored if self.comparable else self._shapes.zeros(shapes)
        if self._votes is not None:
            cached += (self._votes[not self.comparable or torch.is_grad_enabled()],)
        return cached

    def should_compute(self, diff: torch.Tensor) -> bool:
        """The guard: ``diff`` is the head's difference norm of block 0's residual against what ``enter`` gave."""
        if self._votes is None and (torch.is_grad_enabled() or not self.comparable):
            compute, diff = True, None  # caching is for inference: never change what autograd sees
        else:
            diff = diff.item()
            compute = not diff <= self._threshold()  # NaN compares False: a non-finite diff computes
            if not self.comparable:
                diff = None  # (across ranks: this rank voted to compute, having nothing to compare with)
        stats = self._stats.get(self.context)
        if stats is None:
            stats = self._stats[self.context] = ContextStats()
        stats.record(compute, diff)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fbc %s: %s (diff %s, threshold %s)", self.context, "compute" if compute else "skip",
                      "-" if diff is None else f"{diff:.5f}", self._threshold())
        return compute

    def store(self, residuals: Sequence[torch.Tensor]) -> None:
        """Keep a computed call's block-0 residual and tail residuals for the context's next calls."""
        if not torch.is_grad_enabled():
            self.active.residuals = tuple(t.contiguous() for t in residuals)

    def cached_tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds between calls, all instances and contexts (for memory accounting)."""
        return [t for _, model in self._models.values() for cache in model.contexts.values()
                for t in cache.residuals]

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
        values = (*args, *cache.enter(args))
        values += tuple(self.head(*self._head_args(values)))
        if not cache.should_compute(values[self._diff]):
            return self._skip_outputs(values)
        values += tuple(self.body(*self._body_args(values)))
        values += tuple(self.tail(*self._tail_args(values)))
        cache.store(self._stored(values))
        return self._outputs(values)
