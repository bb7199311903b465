"""diffusers' own First Block Cache, as the reference our decisions must equal step for step.

Tests and benchmarks apply diffusers' hook (``apply_first_block_cache``) to an eager copy of the model and read
back what it decided on each call. The hook keeps its decision in the shared state of the context the call ran
in, so it is read inside that context, right after the call.
"""

from __future__ import annotations

from collections import defaultdict

import torch

__all__ = ["HookDecisions"]


class HookDecisions:
    """Apply diffusers' FBC hook to ``model`` and record its per-call decisions per cache context.

    Call the object with the context name after each model call, still inside ``model.cache_context(name)``
    (``fbc_compile.zoo.denoise(..., after_call=...)`` does). ``decisions[name]`` lists True for a computed call.
    """

    def __init__(self, model: torch.nn.Module, threshold: float) -> None:
        from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

        apply_first_block_cache(model, FirstBlockCacheConfig(threshold=threshold))
        self.decisions: dict[str, list[bool]] = defaultdict(list)
        self._state = next(
            module._diffusers_hook.get_hook("fbc_leader_block_hook").state_manager
            for module in model.modules()
            if hasattr(module, "_diffusers_hook") and module._diffusers_hook.get_hook("fbc_leader_block_hook")
        )

    def __call__(self, context: str) -> None:
        self.decisions[context].append(self._state.get_state().should_compute)
