"""Let a diffusers model's ``cache_context(...)`` and end-of-call reset reach the compiled graph's cache.

Pipelines name each denoiser call with ``transformer.cache_context("cond" | "uncond" | ...)`` and, at the end of
``__call__``, reset every stateful hook. diffusers delivers both through the model's ``HookRegistry``: the
context goes to each ``StateManager`` held by a stateful hook, the reset to each stateful hook's
``reset_state``. So the backend registers one such hook on the model it compiles. The hook does no work per
call; registering it would wrap ``forward``, which would make dynamo trace a different function next call and
recompile, so the original ``forward`` is put back: diffusers keeps only a reference to it.

The backend does not receive the model, only its graph; dynamo's placeholders name where each input came from
(``L['self']._modules[...]``), and the frame being compiled holds that local.

The hook is registered while the first call compiles, after the pipeline entered that call's context, so that
one name has to be read back: ``cache_context`` is a generator-based context manager, suspended at its ``yield``
with the model and the name in its frame for as long as the call runs.
"""

from __future__ import annotations

import gc
import inspect
import logging
import types
import weakref

import torch
import torch.fx as fx

log = logging.getLogger("fbc_compile")

HOOK_NAME = "fbc_compile"

__all__ = ["attach", "compiled_module"]


def compiled_module(gm: fx.GraphModule) -> torch.nn.Module | None:
    """The ``nn.Module`` whose ``forward`` dynamo is compiling into ``gm``, if it can be found.

    Dynamo names where each parameter of the graph came from, starting at a local of the frame it compiles:
    ``L['self'].transformer_blocks...`` for the model's own ``forward``, or, where a diffusers hook wraps it
    (context parallelism registers some), ``L['function_reference'].forward.__self__.transformer_blocks...``.
    The model is the first module on that path."""
    try:
        from torch._dynamo.source import LocalSource
        from torch._dynamo.symbolic_convert import InstructionTranslator

        tx = InstructionTranslator.current_tx()
    except Exception:  # not inside dynamo (a graph passed to the backend by hand), or a torch without this
        return None
    for node in gm.graph.find_nodes(op="placeholder"):
        chain, source = [], getattr(node, "_dynamo_source", None)
        while source is not None:
            chain.append(source)
            source = getattr(source, "base", None)
        if not chain or not isinstance(chain[-1], LocalSource) or chain[-1].local_name not in tx.f_locals:
            continue
        value = tx.f_locals[chain[-1].local_name]
        for source in reversed(chain[:-1]):
            if isinstance(value, torch.nn.Module):
                return value
            try:
                value = eval(source._name_template.format("value"), {}, {"value": value})
            except Exception:
                break
        if isinstance(value, torch.nn.Module):
            return value
    return None


def _entered_context(module: torch.nn.Module) -> str | None:
    """The name of the ``cache_context`` of ``module`` that is open right now, if any."""
    from diffusers.models.cache_utils import CacheMixin

    code = inspect.unwrap(CacheMixin.cache_context).__code__
    for referrer in gc.get_referrers(module):
        if isinstance(referrer, types.GeneratorType) and referrer.gi_code is code and referrer.gi_frame is not None:
            return referrer.gi_frame.f_locals.get("name")
    return None


def _hook_classes():
    """The diffusers classes, built lazily: diffusers is only needed when the compiled model is a diffusers one."""
    from diffusers.hooks.hooks import BaseState, ModelHook, StateManager

    class _NoState(BaseState):
        def reset(self, *args, **kwargs) -> None:
            pass

    class ContextName(StateManager):
        """Receives the pipeline's ``CacheContext``; only its name is used."""

        def __init__(self) -> None:
            super().__init__(_NoState)
            self.name: str | None = None

        def set_context(self, context) -> None:
            super().set_context(context)
            self.name = None if context is None else context.name

    class CacheContextHook(ModelHook):
        _is_stateful = True

        def __init__(self) -> None:
            super().__init__()
            self.context = ContextName()
            self.caches = weakref.WeakSet()  # the FirstBlockCache of every graph compiled for this model

        def reset_state(self, module):
            for cache in list(self.caches):
                cache.reset()
            return module

    return CacheContextHook


def attach(module: torch.nn.Module | None, cache) -> None:
    """Let ``module``'s diffusers cache contexts name ``cache``'s calls, and its stateful-hook reset reset it."""
    if module is None or not hasattr(module, "cache_context"):
        return
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(module)
    hook = registry.get_hook(HOOK_NAME)
    if hook is None:
        instance_forward = module.__dict__.get("forward")
        registry.register_hook(_hook_classes()(), HOOK_NAME)
        if instance_forward is None:
            del module.forward
        else:
            module.forward = instance_forward
        registry.invalidate_child_registries_cache()
        hook = registry.get_hook(HOOK_NAME)
        hook.context.name = _entered_context(module)
        log.info("fbc: following the cache contexts of %s", type(module).__name__)
    hook.caches.add(cache)
    context = hook.context
    cache.explicit_context = lambda: context.name
