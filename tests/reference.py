"""References for the backend's decisions and outputs, built without its graph pass.

``IdentityBodyReference``: First Block Cache as the rule states it, run on the eager model with forward hooks:
the oracle for every model, including those on which diffusers' own hook does not run (or runs wrong).
``record_hook_decisions``: diffusers' own First Block Cache hook, recording what it decides.

The rule of ``IdentityBodyReference``,
for blocks ``b_0 .. b_{N-1}`` of the main sequence: run block 0; ``r = hidden_states_out -
hidden_states_in``; compare with the context's ``r_prev`` from its last computed call,
``mean|r - r_prev| / mean|r_prev|``. Compute: run everything, keep ``r`` and ``R = last(h0) - last_id(h0)``,
where ``last`` is what the last block returns and ``last_id`` what it returns when blocks 1..N-1 are the identity
on their streams (each returns the inputs it carries, in its output's order; the glue between blocks still runs).
Skip: run with blocks 1..N-1 the identity, and the last block returning its carried inputs + ``R``.

Which inputs a block carries, and in which order it returns them, comes from the test's own description of
the model (``ModelSpec.carries``), checked against the block's real outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from typing import Any

import torch

__all__ = ["IdentityBodyReference", "HookRecord", "execution_order", "hook_context", "record_hook_decisions"]


def execution_order(model: torch.nn.Module, lists: tuple[str, ...], **inputs) -> list[str]:
    """The names of the blocks of ``lists`` (module lists of ``model``) in the order one eager call runs them."""
    order, handles = [], []
    for list_name in lists:
        for index, block in enumerate(model.get_submodule(list_name)):
            name = f"{list_name}.{index}"
            handles.append(block.register_forward_pre_hook(lambda module, args, name=name: order.append(name)))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


@dataclasses.dataclass
class _State:
    previous: torch.Tensor | None = None  # r_prev
    residuals: tuple | None = None  # R, one per value the last block returns


class IdentityBodyReference:
    """``reference(context, **inputs)``: one denoiser call of ``model`` under First Block Cache, eagerly.

    ``blocks`` are the names of the main sequence's blocks in execution order; ``carries`` maps a block class
    name to the names of the forward arguments it carries, in the order it returns them (a block returning one
    tensor carries one). Block 0's argument ``hidden`` (or its only stream) is measured.
    """

    def __init__(self, model: torch.nn.Module, blocks: list[str], carries: dict[str, tuple[str, ...]],
                 threshold: float, hidden: str = "hidden_states") -> None:
        self.model, self.threshold, self.hidden = model, threshold, hidden
        self.blocks = [model.get_submodule(name) for name in blocks]
        self.carries = carries
        self.states: dict[str, _State] = {}
        self.decisions: dict[str, list[bool]] = {}
        self.diffs: dict[str, list[float | None]] = {}

    def _carried(self, block: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
        bound = inspect.signature(block.forward).bind(*args, **kwargs)
        return tuple(bound.arguments[name] for name in self.carries[type(block).__name__])

    @staticmethod
    def _like(output: Any, values: tuple) -> Any:
        """``values`` in the structure of the block's real ``output`` (a tensor, or a tuple of them; where the
        block returns ``None`` for a stream, as SD3's last block does for the text, so does this)."""
        if isinstance(output, torch.Tensor):
            (value,) = values
            assert value.shape == output.shape, "a carried input must have its output's shape"
            return value
        assert len(values) == len(output), "the carried inputs must match the block's outputs in number"
        values = tuple(None if o is None else v for v, o in zip(values, output))
        assert all(v is None or v.shape == o.shape for v, o in zip(values, output)), (
            "the carried inputs must have their outputs' shapes")
        return values

    def _run(self, inputs: dict, identity: bool, residuals: tuple | None):
        """One forward; returns (model output, block 0's residual, what the last block returned as a tuple)."""
        seen: dict[str, Any] = {}
        handles = []

        def head_hook(module, args, kwargs, output):
            names = self.carries[type(module).__name__]
            hidden = self.hidden if self.hidden in names else names[0]  # a single stream may have its own name
            inp = inspect.signature(module.forward).bind(*args, **kwargs).arguments[hidden]
            out = output if isinstance(output, torch.Tensor) else output[names.index(hidden)]
            seen["residual"] = out - inp

        def body_hook(module, args, kwargs, output):
            if not identity:
                result = output
            else:
                result = self._like(output, self._carried(module, args, kwargs))
            if module is self.blocks[-1]:
                values = (result,) if isinstance(result, torch.Tensor) else tuple(result)
                if residuals is not None:
                    values = tuple(None if v is None else v + r for v, r in zip(values, residuals))
                    result = self._like(output, values)
                seen["last"] = values
            return result

        handles.append(self.blocks[0].register_forward_hook(head_hook, with_kwargs=True))
        handles += [block.register_forward_hook(body_hook, with_kwargs=True) for block in self.blocks[1:]]
        try:
            output = self.model(**inputs)
        finally:
            for handle in handles:
                handle.remove()
        return output, seen["residual"], seen["last"]

    def __call__(self, context: str, **inputs):
        state = self.states.setdefault(context, _State())
        with torch.no_grad():
            identity_output, residual, identity_last = self._run(inputs, True, None)
            diff = None
            if state.previous is not None and state.previous.shape == residual.shape:
                diff = ((residual - state.previous).abs().mean() / state.previous.abs().mean()).item()
            compute = diff is None or not diff <= self.threshold
            self.decisions.setdefault(context, []).append(compute)
            self.diffs.setdefault(context, []).append(diff)
            if not compute:
                output, _, _ = self._run(inputs, True, state.residuals)
                return output
            output, _, last = self._run(inputs, False, None)
            state.previous = residual
            state.residuals = tuple(None if full is None else full - same for full, same in zip(last, identity_last))
            return output

    def reset(self) -> None:
        self.states.clear()


@dataclasses.dataclass
class HookRecord:
    """Per cache-context name: decisions (True = computed the remaining blocks) and diffs (None = no comparison)."""

    decisions: dict = dataclasses.field(default_factory=dict)
    diffs: dict = dataclasses.field(default_factory=dict)

    def clear(self) -> None:
        self.decisions.clear()
        self.diffs.clear()


@contextlib.contextmanager
def hook_context(model: torch.nn.Module, name: str):
    """diffusers' ``cache_context(name)``, also for a model class without ``CacheMixin`` (its hooks need one)."""
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    _set_cache_context(model, CacheContext(name))
    try:
        yield
    finally:
        _set_cache_context(model, None)


def record_hook_decisions(model: torch.nn.Module, threshold: float) -> HookRecord:
    """Apply diffusers' First Block Cache to ``model`` (uncompiled) and record, per cache context, every decision
    its head-block hook makes and the difference it measured. The recording wraps the hook's own
    ``_should_compute_remaining_blocks`` on the instance: the original still decides."""
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    apply_first_block_cache(model, FirstBlockCacheConfig(threshold=threshold))
    hook = next(m._diffusers_hook.get_hook(_FBC_LEADER_BLOCK_HOOK) for m in model.modules()
                if getattr(m, "_diffusers_hook", None) is not None
                and m._diffusers_hook.get_hook(_FBC_LEADER_BLOCK_HOOK) is not None)
    original = hook._should_compute_remaining_blocks
    record = HookRecord()

    @functools.wraps(original)
    def recording(residual: torch.Tensor) -> bool:
        manager = hook.state_manager  # diffusers < 0.41 keeps the context's name in _current_context
        name = manager.context.name if hasattr(manager, "context") else manager._current_context
        previous = hook.state_manager.get_state().head_block_residual
        decision = original(residual)
        diff = None
        if previous is not None:
            diff = ((residual - previous).abs().mean() / previous.abs().mean()).item()
        record.decisions.setdefault(name, []).append(bool(decision))
        record.diffs.setdefault(name, []).append(diff)
        return decision

    hook._should_compute_remaining_blocks = recording
    return record
