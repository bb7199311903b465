"""diffusers' own First Block Cache, the reference our decisions must equal step for step (tests, benchmarks).

``record_hook_decisions(transformer)`` enables diffusers' FBC on an (uncompiled) transformer and records, per
cache context, every decision its head-block hook makes and the difference it measured. The recording wraps
the hook's own ``_should_compute_remaining_blocks`` on the instance: the original still decides, we only
write down its answer (and recompute the diff with the hook's formula, for messages).
"""

from __future__ import annotations

import dataclasses
import functools

import torch


@dataclasses.dataclass
class HookRecord:
    """Per cache-context name: decisions (True = computed the remaining blocks) and diffs (None = no comparison)."""

    decisions: dict = dataclasses.field(default_factory=dict)
    diffs: dict = dataclasses.field(default_factory=dict)

    def clear(self) -> None:
        self.decisions.clear()
        self.diffs.clear()


def head_hook(transformer: torch.nn.Module):
    """The ``FBCHeadBlockHook`` diffusers registered on the transformer's first block."""
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_FBC_LEADER_BLOCK_HOOK) is not None:
            return registry.get_hook(_FBC_LEADER_BLOCK_HOOK)
    raise LookupError("no First Block Cache head hook on this model: call enable_cache first")


def record_hook_decisions(transformer: torch.nn.Module, threshold: float) -> HookRecord:
    """Enable diffusers' First Block Cache on ``transformer`` and record what its head hook decides."""
    from diffusers import FirstBlockCacheConfig

    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    hook = head_hook(transformer)
    original = hook._should_compute_remaining_blocks
    record = HookRecord()

    @functools.wraps(original)
    def recording(residual: torch.Tensor) -> bool:
        state_manager = hook.state_manager
        name = state_manager.context.name
        previous = state_manager.get_state().head_block_residual
        decision = original(residual)
        diff = None
        if previous is not None:
            diff = ((residual - previous).abs().mean() / previous.abs().mean()).item()
        record.decisions.setdefault(name, []).append(bool(decision))
        record.diffs.setdefault(name, []).append(diff)
        return decision

    hook._should_compute_remaining_blocks = recording
    return record
