"""The diffusers hook through which a model's cache contexts and its pipeline's end-of-call reset reach the cache.

Imported only when a diffusers model is compiled. The classes live at module level, so that a model that carries
the hook still pickles (``torch.save``); a pickled hook comes back inert, and is bound again when the model is
compiled.
"""

from __future__ import annotations

import threading

from diffusers.hooks.hooks import BaseState, ModelHook, StateManager

__all__ = ["CacheContextHook"]


class _NoState(BaseState):
    def reset(self, *args, **kwargs) -> None:
        pass


class ContextName(StateManager):
    """Receives the pipeline's ``CacheContext`` and keeps its name per thread: two threads calling one model in
    their own ``cache_context`` keep their own contexts."""

    def __init__(self) -> None:
        super().__init__(_NoState)
        self._local = threading.local()
        self.on_enter = lambda: None

    @property
    def name(self) -> str | None:
        return getattr(self._local, "name", None)

    @name.setter
    def name(self, value: str | None) -> None:
        self._local.name = value

    def set_context(self, context) -> None:
        super().set_context(context)
        # diffusers >= 0.41 passes a CacheContext, older releases its name.
        self.name = context if context is None or isinstance(context, str) else context.name
        if context is not None:
            self.on_enter()

    def __reduce__(self):
        return ContextName, ()


class CacheContextHook(ModelHook):
    """A stateful hook that does no work per call: diffusers hands it the context names and the resets."""

    _is_stateful = True

    def __init__(self) -> None:
        super().__init__()
        self.context = ContextName()
        self.on_reset = lambda: None

    def reset_state(self, module):
        self.on_reset()
        return module

    def __reduce__(self):
        return CacheContextHook, ()
