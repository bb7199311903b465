"""The eager guard between the compiled head and body, and the state it keeps per cache context.

This is the only code that runs outside compiled pieces on every call. It is called from the split graph, which
the backend returns to dynamo; dynamo wraps that in ``torch._dynamo.disable``, so nothing here is traced or
guarded: a decision can change from call to call without a recompile. It does one host synchronisation per call
(the ``.item()`` that reads the difference norm) and no other arithmetic than the skip path's one add per stream.

Semantics follow diffusers' ``FBCHeadBlockHook`` step for step (see ``shared/notes/fbc-semantics.md``):
``diff = mean|r - r_prev| / mean|r_prev|`` against the last *computed* call of the same context; skip when
``diff <= threshold``. Where they differ it is on purpose and safer: a non-finite diff always computes, a shape,
dtype or device change always computes, grad mode never skips, and a reset forgets ``r_prev`` too, so every
generation starts with a full compute.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import Callable, Sequence

import torch

from .kernels import residual_diff

log = logging.getLogger("fbc_compile")

__all__ = ["ContextStats", "ResidualCache", "FirstBlockCache", "CachedBody"]


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

    def comparable(self, residual: torch.Tensor) -> bool:
        prev = self.block0_residual
        return (prev is not None and prev.shape == residual.shape and prev.dtype == residual.dtype
                and prev.device == residual.device)


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
                 latent_inputs: Sequence[int], instance_input: int | None) -> None:
        self._threshold = threshold
        self._stats = stats
        self._latent_inputs = tuple(latent_inputs)
        self._instance_input = instance_input
        self.explicit_context: Callable[[], str | None] = lambda: None  # set by diffusers_context.attach
        self._models: dict[int, tuple[weakref.ref | None, ModelState]] = {}
        self.context = "branch0"
        self.active = ResidualCache()

    def _model(self, args: Sequence) -> ModelState:
        param = args[self._instance_input] if self._instance_input is not None else None
        key = id(param)
        ref, model = self._models.get(key, (None, None))
        if model is None or (ref is not None and ref() is not param):  # new, or a dead id reused
            ref = weakref.ref(param) if param is not None else None
            model = ModelState()
            self._models[key] = (ref, model)
        return model

    def enter(self, args: Sequence) -> None:
        """Select the context of the call whose graph inputs are ``args``."""
        model = self._model(args)
        latents = [args[i] for i in self._latent_inputs]
        same_step = bool(latents) and len(latents) == len(model.previous_latents) and all(
            ref() is t and version == t._version for (ref, version), t in zip(model.previous_latents, latents)
        )
        model.branch = model.branch + 1 if same_step else 0
        model.previous_latents = tuple((weakref.ref(t), t._version) for t in latents)
        self.context = self.explicit_context() or f"branch{model.branch}"
        self.active = model.contexts.setdefault(self.context, ResidualCache())

    def should_compute(self, residual: torch.Tensor) -> bool:
        """The guard: compare block 0's residual with the active context's last computed one."""
        cache, diff = self.active, None
        if torch.is_grad_enabled():
            compute = True  # caching is for inference: never change what autograd sees
        elif not cache.comparable(residual):
            compute = True
        else:
            diff = residual_diff(residual, cache.block0_residual).item()
            compute = not diff <= self._threshold()  # NaN compares False: a non-finite diff computes
        self._stats.setdefault(self.context, ContextStats()).record(compute, diff)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fbc %s: %s (diff %s, threshold %s)", self.context, "compute" if compute else "skip",
                      "-" if diff is None else f"{diff:.5f}", self._threshold())
        return compute

    def store(self, residual: torch.Tensor, outputs: Sequence[torch.Tensor],
              tail_residuals: Sequence[torch.Tensor]) -> None:
        if not torch.is_grad_enabled():
            cache = self.active
            cache.block0_residual, cache.tail_residuals = residual, tuple(tail_residuals)
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


class CachedBody(torch.nn.Module):
    """Stands in for the compiled body in the split graph; takes block 0's residual as an extra last argument.

    Computing: runs the body (which also returns the tail residuals) and stores them. Skipping: each value the
    body hands on is its block-0 counterpart plus the stored tail residual; the returned tuple has the body's
    layout, so the split graph's wiring to the tail is unchanged.
    """

    def __init__(self, body: Callable, cache: FirstBlockCache, streams: list[tuple[int, int, int]],
                 num_outputs: int) -> None:
        super().__init__()
        self.body = body
        self.cache = cache
        self.streams = streams
        self.num_outputs = num_outputs

    def forward(self, *args):
        *inputs, residual = args
        if self.cache.should_compute(residual):
            outputs = self.body(*inputs)
            self.cache.store(residual, [outputs[o] for o, _, _ in self.streams], [outputs[r] for _, _, r in self.streams])
            return outputs
        cached = self.cache.active
        outputs = [None] * self.num_outputs
        for (out, inp, res), tail_residual, (size, stride) in zip(self.streams, cached.tail_residuals, cached.layouts):
            block0_output = inputs[inp]
            outputs[out] = torch.add(block0_output, tail_residual, out=block0_output.new_empty_strided(size, stride))
            outputs[res] = tail_residual
        return tuple(outputs)
