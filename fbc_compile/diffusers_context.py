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
with the model and the name in its frame for as long as the call runs. Another instance of the model class that
the graph serves gets its own hook at its first call, found among the locals of the calls on the stack.
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

__all__ = ["attach", "compiled_module", "module_holding"]


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


def module_holding(param: torch.Tensor) -> torch.nn.Module | None:
    """The module, among the locals of the calls on the stack, that holds ``param``: the model instance whose
    ``forward`` is running, for an instance the graph was not compiled for."""
    frame = inspect.currentframe()
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, torch.nn.Module) and any(p is param for p in value.parameters()):
                return value
        frame = frame.f_back
    return None


def attach(module: torch.nn.Module | None, state, on_reset) -> None:
    """Let ``module``'s diffusers cache contexts name ``state``'s contexts, and its stateful-hook reset (which a
    pipeline runs at the end of each call) run ``on_reset``."""
    if module is None or not hasattr(module, "cache_context"):
        return
    from diffusers.hooks import HookRegistry

    from ._diffusers_hook import CacheContextHook

    registry = HookRegistry.check_if_exists_or_initialize(module)
    hook = registry.get_hook(HOOK_NAME)
    if hook is None:
        instance_forward = module.__dict__.get("forward")
        registry.register_hook(CacheContextHook(), HOOK_NAME)
        if instance_forward is None:
            del module.forward
        else:
            module.forward = instance_forward
        if hasattr(registry, "invalidate_child_registries_cache"):  # diffusers >= 0.41 caches the registries
            registry.invalidate_child_registries_cache()
        hook = registry.get_hook(HOOK_NAME)
        hook.context.name = _entered_context(module)
        log.info("fbc: following the cache contexts of %s", type(module).__name__)
    context, entered = hook.context, weakref.WeakMethod(state.entered)  # (the hook must not keep the state alive)
    state.explicit = lambda: context.name
    context.on_enter = lambda: entered() and entered()()
    hook.on_reset = on_reset
