"""What the cache remembers between calls, per model instance and cache context, and how a call finds its own.

A backend's graphs can serve several model instances (parameters are graph inputs, and dynamo does not guard on
the module's identity: Wan 2.2's two transformers share a graph), and one instance is served by several graphs
(one per input shape, dtype or calling convention). So the state lives here, per instance, shared by the
backend's graphs, and each context remembers which graph computed its last call: a residual is only compared
with, or added to, a call of the graph and the shapes that made it. The first call after any change computes.

A call's context is the name of the diffusers ``cache_context`` it runs in (pipelines name "cond", "uncond", ...;
the name is kept per thread, so threads sharing a model keep their own contexts), else an implicit one, named
after the conditioning tensors it receives: every input but the latents and the timestep, by identity (and
version, where it has one). The calls of a hand-written CFG loop pass one set of text embeddings for cond and
another for uncond, the same objects every step, so "branch0" and "branch1" never compare with each other, however
the latents are passed (a new tensor per branch, one buffer updated in place or through ``.data``, under
``inference_mode``). An implicit context dies with its tensors.

Nothing of a call is kept on a shared object: ``enter`` returns a ``Call`` record that the guard hands back.
Dicts grow under a lock; a call only reads them and replaces one context's residuals.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import warnings
import weakref
from typing import Callable, Sequence

import torch

__all__ = ["Call", "ModelState", "ModelStates", "ResidualCache", "MAX_CONTEXTS"]

#: Contexts kept per model instance; the least recently used one beyond is forgotten (its next call computes).
MAX_CONTEXTS = 32
# Calls in a row that each start a new implicit context before the cache says nothing can be compared.
_FRESH_CALLS_WARNING = 8
_UNREACHED_WARNING = 3


@dataclasses.dataclass
class ResidualCache:
    """One context's last computed call: block 0's residual and the tail residuals, in the order the head takes
    them (contiguous, as it is compiled for), and the graph that computed them."""

    residuals: tuple[torch.Tensor, ...] = ()
    graph: object = None


@dataclasses.dataclass
class Call:
    """One call's record, from ``enter`` to ``store``."""

    context: str
    cache: ResidualCache
    comparable: bool


class ModelState:
    """The contexts of one model instance. ``explicit()`` names the diffusers ``cache_context`` the current
    thread's call runs in, once a hook on the model reports it (``diffusers_context``)."""

    def __init__(self) -> None:
        self.contexts: collections.OrderedDict[str, ResidualCache] = collections.OrderedDict()
        self.implicit: dict[tuple, list] = {}  # ids of the conditioning tensors -> [context name, their versions]
        self.explicit: Callable[[], str | None] = lambda: None
        self.lock = threading.Lock()
        self._fresh = 0  # calls in a row with nothing to compare with
        self.unreached = 0  # cache contexts entered in a row with no call reaching a compiled graph

    def entered(self) -> None:
        """A diffusers ``cache_context`` of the model was entered. Several in a row with no call reaching the
        cache mean dynamo runs the model with code compiled elsewhere: every diffusers transformer shares one
        ``forward``, and another ``torch.compile`` of the class (another backend, diffusers' hooks) can make dynamo
        give up on that function or serve it from another cache entry."""
        self.unreached += 1
        if self.unreached == _UNREACHED_WARNING:
            warnings.warn(
                f"fbc_compile: the model's last {_UNREACHED_WARNING} calls never reached the graph fbc compiled, so "
                "they ran without First Block Cache. Another torch.compile of the same model class (another "
                "backend, or diffusers' cache hooks) shares its `forward` with this one and dynamo runs that code "
                "now; compile each model class with one backend in a process, or call torch._dynamo.reset() "
                "before compiling this model again.", stacklevel=2)

    def context(self, args: Sequence, conditions: Sequence[int]) -> str:
        name = self.explicit()
        if name is not None:
            return name
        tensors = [args[i] for i in conditions]
        ids = tuple(id(t) for t in tensors)
        versions = tuple(None if t.is_inference() else t._version for t in tensors)
        entry = self.implicit.get(ids)
        if entry is not None and entry[1] == versions:
            self._fresh = 0
            return entry[0]
        with self.lock:
            if entry is None:
                taken = {name for name, _ in self.implicit.values()}
                entry = self.implicit[ids] = [next(f"branch{i}" for i in range(len(taken) + 1)
                                                   if f"branch{i}" not in taken), versions]
                for tensor in tensors:  # the context dies with any of its tensors (an id may then be reused)
                    weakref.finalize(tensor, _forget, weakref.ref(self), ids)
            else:  # the same tensors, modified in place since: what was cached for them is no longer theirs
                entry[1] = versions
                self.contexts.pop(entry[0], None)
            self._fresh += 1
        if self._fresh == _FRESH_CALLS_WARNING:
            warnings.warn(
                f"fbc_compile: {_FRESH_CALLS_WARNING} calls in a row passed conditioning tensors no earlier call "
                "passed (or modified them in place), so none could be compared with another and none was skipped. "
                "Pass the same tensors every step, or name each branch with `with model.cache_context('cond'):`.",
                stacklevel=4)
        return entry[0]

    def forget(self, ids: tuple) -> None:
        """Drop the implicit context of the conditioning tensors ``ids``, one of which died."""
        with self.lock:
            entry = self.implicit.pop(ids, None)
            if entry is not None:
                self.contexts.pop(entry[0], None)

    def cache(self, name: str) -> ResidualCache:
        cache = self.contexts.get(name)
        if cache is None:
            with self.lock:
                cache = self.contexts.setdefault(name, ResidualCache())
                while len(self.contexts) > MAX_CONTEXTS:
                    self.contexts.popitem(last=False)
        else:
            self.contexts.move_to_end(name)
        return cache

    def clear(self) -> None:
        with self.lock:
            self.contexts.clear()


def _forget(state: weakref.ref, ids: tuple) -> None:
    """(A finalizer: holds the state weakly, so that conditioning tensors do not keep a dead model's state.)"""
    if state() is not None:
        state().forget(ids)


class ModelStates:
    """Every instance's ``ModelState``, keyed by the identity of one of its parameters and freed with it (a
    deleted model, or one reloaded with ``load_state_dict(assign=True)``, takes its cached tensors along)."""

    def __init__(self) -> None:
        self._states: dict[int, ModelState] = {}
        self._lock = threading.Lock()
        self.on_new: Callable[[torch.Tensor, ModelState], None] = lambda param, state: None

    def get(self, param: torch.Tensor) -> ModelState:
        state = self._states.get(id(param))
        if state is None:
            with self._lock:
                state = self._states.get(id(param))
                if state is None:
                    state = self._states[id(param)] = ModelState()
                    weakref.finalize(param, self._states.pop, id(param), None)
            self.on_new(param, state)
        return state

    def clear(self) -> None:
        for state in list(self._states.values()):
            state.clear()

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor cached between calls, all instances and contexts (for memory accounting)."""
        return [t for state in list(self._states.values()) for cache in list(state.contexts.values())
                for t in cache.residuals]
