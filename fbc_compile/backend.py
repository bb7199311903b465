"""``fbc_backend``: a torch.compile backend that gives a diffusion transformer First Block Cache.

Data path, once per dynamo graph (one per input shape):

    graph in -> locate_blocks -> split_at_first_block -> pieces compiled -> CachedGraph runs each call
                                                                              (FirstBlockCache decides)

Each piece (the head, each block of the body, the tail) is compiled with the inner compiler on the fake values
dynamo traced for its inputs (``_compile_in_order`` says why those and not a fake run of the compiled pieces, as
DDPOptimizer's ``SubmodCompiler`` does). Dynamo still sees one graph and one compiled callable, so nothing
recompiles when the cache decides differently from one call to the next: the decision is made in eager code
between the pieces.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import weakref
import logging
import math
import numbers
import warnings
from collections import Counter
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
from torch._dynamo.backends.distributed import DDPOptimizerContext
from torch._dynamo.source import DictGetItemSource, GetItemSource, LocalSource
from torch._dynamo.utils import counters, detect_fake_mode, to_fake_tensor

from . import diffusers_context
from .cache import CachedGraph, CachedShapes, FirstBlockCache, Stats
from .state import ModelStates
from .passes.locate import NoBlockSequence, locate_blocks
from .passes.split import FirstBlockSplit, reduction_groups, split_at_first_block, split_into_blocks, wired_pieces

log = logging.getLogger("fbc_compile")

__all__ = ["FBCBackend", "fbc_backend", "compilation_counter", "COMPILERS"]

#: Process-wide counts that the regression tests assert on (like vLLM's ``compilation_counter``).
compilation_counter: Counter = Counter()

COMPILERS = ("inductor", "eager")
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", None)
_OPTIONS = ("threshold", "compiler")


def _check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"threshold must be a real number >= 0, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"threshold must be a real number >= 0 (0 disables skipping), got {value!r}")
    return float(value)


def _check_compiler(value: Any):
    if callable(value):
        return value
    if value not in COMPILERS:
        raise ValueError(f"compiler must be one of {', '.join(map(repr, COMPILERS))} or a callable "
                         f"(gm, example_inputs) -> callable, got {value!r}")
    return value


def _inductor_options(mode: str | None, options: dict) -> dict:
    """Inductor config patches for ``mode=``/``options=``, validated the way ``torch.compile`` does."""
    import torch._inductor.config as inductor_config
    from torch._inductor import list_mode_options

    patches = dict(list_mode_options(mode) if mode not in (None, "default") else {})
    valid = inductor_config.get_config_copy()
    for key, value in options.items():
        if key not in valid:
            allowed = ", ".join(_OPTIONS)
            raise ValueError(f"unknown option {key!r}: fbc options are {allowed}; any other key must be an "
                             f"inductor config option (see torch._inductor.list_options())")
        patches[key] = value
    if not patches.get("keep_output_stride", True):
        raise ValueError("option keep_output_stride must be True with fbc: each piece is compiled for the strides "
                         "eager gives the previous piece's outputs")
    if patches.pop("triton.cudagraphs", False):
        warnings.warn("fbc_compile: CUDA graphs are not captured per piece yet; compiling without them",
                      stacklevel=3)
    return patches


class FBCBackend:
    """A ``torch.compile`` backend with First Block Cache. Build it with :func:`fbc_backend`.

    One object keeps the cache state of every graph it compiles (separately per graph and per cache context),
    the statistics (merged per context name), and the threshold, which can be changed between calls without a
    recompile.
    """

    def __init__(self, threshold: float = 0.05, *, compiler: str | Callable = "inductor",
                 mode: str | None = None, options: dict | None = None) -> None:
        self.threshold = threshold
        self.compiler = _check_compiler(compiler)
        self.stats = Stats()
        self._states = ModelStates()  # per model instance, shared by every graph this backend compiles
        self._states.on_new = lambda param, state: self._follow_contexts(
            diffusers_context.module_holding(param), state)
        self._configure(mode, options)

    def __deepcopy__(self, memo: dict) -> FBCBackend:
        """``copy.deepcopy(compiled_model)`` copies the model and keeps this backend: the copy's calls reach it
        (its threshold, ``stats`` and ``reset()``), with state of their own, as for any other instance."""
        return self

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = _check_threshold(value)

    def _configure(self, mode: str | None, options: dict | None) -> None:
        if not isinstance(options, (dict, type(None))):
            raise TypeError(f"options must be a dict of option name to value, got {type(options).__name__}")
        if not isinstance(mode, (str, type(None))):
            raise TypeError(f"mode must be a string or None, got {type(mode).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        options = dict(options or {})
        if "threshold" in options:
            self.threshold = options.pop("threshold")
        if "compiler" in options:
            self.compiler = _check_compiler(options.pop("compiler"))
        self._inductor_patches = _inductor_options(mode, options)

    def reset(self) -> None:
        """Drop all cache state and statistics; the cached tensors are freed here."""
        self._states.clear()
        self.stats.clear()

    def _follow_contexts(self, module: torch.nn.Module | None, state) -> None:
        """Let a diffusers model's cache contexts name ``state``'s contexts, and its pipeline's end-of-call reset
        forget them (that instance's only) and start the statistics' new generation."""

        stats, state = self.stats, weakref.ref(state)  # the model's hook must not keep a reloaded model's state

        def reset() -> None:
            if state() is not None:
                state().clear()
            stats.end_generation()

        diffusers_context.attach(module, state(), reset)

    def __call__(self, gm: fx.GraphModule, example_inputs: list, mode: str | None = None,
                 options: dict | None = None) -> Callable:
        if mode is not None or options:
            self._configure(mode, options)
        compilation_counter["graphs"] += 1
        module = diffusers_context.compiled_module(gm)
        try:
            split = self._split(gm, example_inputs, module)
            pieces = self._compile_pieces(split, [*example_inputs, *split.cached])
        except torch._dynamo.exc.RestartAnalysis:
            raise  # dynamo traces the frame again and calls the backend anew
        except Exception as reason:
            # A backend must not fail a compile that the inner compiler alone would do.
            compilation_counter["fallbacks"] += 1
            if not isinstance(reason, NoBlockSequence):
                log.info("fbc: the split failed", exc_info=True)
                reason = f"splitting the graph failed ({type(reason).__name__}: {reason})"
            warnings.warn(f"fbc_compile: {reason}; compiling the graph without First Block Cache{_fragment()}",
                          stacklevel=2)
            return self._compile_piece(gm, example_inputs)
        input_values = [node.meta.get("example_value") for node in gm.graph.find_nodes(op="placeholder")]
        cache = FirstBlockCache(lambda: self._threshold, self.stats, self._states,
                                _conditions(gm, example_inputs, module), split.instance_input,
                                CachedShapes(split.cached[:-1] if split.groups else split.cached, input_values),
                                across_ranks=bool(split.groups))
        self._follow_contexts(module, self._states.get(example_inputs[split.instance_input]))
        compilation_counter["split_graphs"] += 1
        return CachedGraph(split.wiring, pieces, cache)

    def _split(self, gm: fx.GraphModule, example_inputs: list, module: torch.nn.Module | None) -> FirstBlockSplit:
        params = {node for node, value in zip(gm.graph.find_nodes(op="placeholder"), example_inputs)
                  if isinstance(value, torch.nn.Parameter)}
        blocks = locate_blocks(gm, params, module)
        # Dynamo traces and guards grad mode per graph, and a graph traced with grad enabled never skips.
        split = split_at_first_block(gm, example_inputs, blocks, speculate=not torch.is_grad_enabled(),
                                     latent_name=_first_argument(module), groups=reduction_groups(blocks))
        log.info("fbc: %d blocks (%s ... %s); pieces: head %d, body %d, tail %d nodes", len(blocks),
                 blocks[0].name, blocks[-1].name, *split.sizes)
        return split

    def _compile_piece(self, gm: fx.GraphModule, example_inputs: list) -> Callable:
        compilation_counter["pieces"] += 1
        if callable(self.compiler):
            return self.compiler(gm, example_inputs)
        if self.compiler == "eager":
            return gm.forward
        from torch._inductor.compile_fx import compile_fx

        return compile_fx(gm, example_inputs, config_patches=self._inductor_patches)

    def _compile_pieces(self, split: FirstBlockSplit, example_inputs: list) -> list[Callable]:
        """Compile head, body and tail; the body one block at a time (``split_into_blocks`` says why).

        A graph traced with grad enabled compiles each piece's backward lazily, at its first backward call, from
        metadata AOTAutograd keeps on the tracing context, which several forward compiles in one context
        overwrite. For those graphs each piece's metadata is kept, in compile order, the way DDPOptimizer keeps its
        buckets' (see Note [DDPOptimizer and fw_metadata] in torch), and AOTAutograd's cache stays off, since a
        piece loaded from it would compile no backward and leave that list out of step.
        """
        context = torch._guards.TracingContext.try_get()
        training = torch.is_grad_enabled() and context is not None
        if training:
            context.ddp_optimizer_ctx = DDPOptimizerContext()

        def compile_piece(piece: fx.GraphModule, inputs: list) -> Callable:
            aot_calls = counters["aot_autograd"]["total"]
            cache = torch._functorch.config.patch(enable_autograd_cache=False) if training else contextlib.nullcontext()
            with cache, torch._dynamo.utils._disable_saved_tensors_hooks_during_tracing():
                compiled = self._compile_piece(piece, inputs)
            if training and counters["aot_autograd"]["total"] != aot_calls:
                context.ddp_optimizer_ctx.curr_bucket += 1
                context.ddp_optimizer_ctx.metadata_per_bucket.append(context.fw_metadata)
            return compiled

        def compile_body(body: fx.GraphModule, inputs: list) -> Callable:
            blocks = split_into_blocks(body)
            calls = blocks.graph.find_nodes(op="call_module")
            pieces, args, _ = wired_pieces(blocks)
            for call, compiled in zip(calls, _compile_in_order(pieces, args, inputs, [compile_piece] * len(calls))):
                delattr(blocks, call.target)
                setattr(blocks, call.target, compiled)  # the generated forward calls it in the submodule's place
            return blocks.forward

        return _compile_in_order(split.pieces, split.wiring.piece_args, example_inputs,
                                 [compile_piece, compile_body, compile_piece])


def _fragment() -> str:
    """Why the graph of a model with blocks holds none of them, where that is so: when dynamo compiles a submodule
    of a model whose own ``forward`` runs eagerly (found on the stack)."""
    try:
        compiling = torch._dynamo.symbolic_convert.InstructionTranslator.current_tx().f_locals.get("self")
    except Exception:
        return ""
    frame = inspect.currentframe()
    while frame is not None:
        model = frame.f_locals.get("self")
        if isinstance(model, torch.nn.Module) and model is not compiling and any(
                isinstance(child, torch.nn.ModuleList) and len(child) > 1 for child in model.children()) and any(
                module is compiling for module in model.modules()):
            if frame.f_code in torch._dynamo.utils.orig_code_map:
                return ""  # the model's code runs under dynamo, cut into several graphs (fullgraph=False)
            return (f". The graph is one call inside {type(model).__name__}.{frame.f_code.co_name}, which runs "
                    f"without dynamo: every diffusers transformer shares one `forward`, and once another "
                    f"torch.compile of the class broke a graph in it (diffusers' cache hooks do), dynamo gives it up "
                    f"for every backend. Compile each model class one way per process, or call "
                    f"torch._dynamo.reset() before compiling it again")
        frame = frame.f_back
    return ""


# Arguments that change every step rather than per branch: the time (timestep, timesteps, r_timestep, ...).
_PER_STEP = re.compile(r"^(t|sigmas?)$|time")


def _conditions(gm: fx.GraphModule, example_inputs: list, module: torch.nn.Module | None) -> tuple[int, ...]:
    """The graph inputs that name a call's implicit context (``state.py``): the model's tensor arguments but its
    latents (the first) and its time, by the name dynamo's sources give them (``kwargs['encoder_hidden_states']``,
    or ``args[i]`` for the i-th parameter of ``forward``). Parameters and buffers come from the module, not from
    the call. A graph dynamo cut out of the middle of the model (``fullgraph=False``) takes intermediate values,
    new every call: it has none, and all its calls share one implicit context."""
    try:
        if "resume_in" in torch._dynamo.symbolic_convert.InstructionTranslator.current_tx().f_code.co_name:
            return ()
    except Exception:
        pass
    names = list(inspect.signature(module.forward).parameters) if module is not None else []
    conditions = []
    for i, (node, value) in enumerate(zip(gm.graph.find_nodes(op="placeholder"), example_inputs)):
        source = getattr(node, "_dynamo_source", None)
        base = getattr(source, "base", None)
        name = None
        if isinstance(source, LocalSource):
            name = source.local_name
        elif isinstance(base, LocalSource) and isinstance(source, DictGetItemSource) and base.local_name == "kwargs":
            name = source.index
        elif isinstance(base, LocalSource) and isinstance(source, GetItemSource) and base.local_name == "args":
            name = names[source.index] if source.index < len(names) else None
        if (isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter) and isinstance(name, str)
                and name != (names[0] if names else "hidden_states") and not _PER_STEP.search(name)):
            conditions.append(i)
    return tuple(conditions)


def _first_argument(module: torch.nn.Module | None) -> str:
    """The name of the module's first ``forward`` argument: the latents, in every diffusion transformer."""
    try:
        return next(iter(inspect.signature(module.forward).parameters))
    except (AttributeError, StopIteration, TypeError, ValueError):
        return "hidden_states"


def _compile_in_order(pieces: Sequence[fx.GraphModule], piece_args: Sequence[tuple[int, ...]], example_inputs: list,
                      compilers: Sequence[Callable]) -> list[Callable]:
    """Compile the pieces of a split graph in order, each on the fake values dynamo traced for its inputs: the
    graph's inputs, then the example values of earlier pieces' outputs (``piece_args`` are positions in those).

    DDPOptimizer's ``SubmodCompiler`` instead runs each compiled piece on fake tensors to learn the strides of
    what it hands the next one (``fakify_first_call``), and AOTAutograd refuses its cache for such a compile:
    every warm start would trace all the pieces again. Inductor gives a graph's outputs the strides eager gives
    them (``keep_output_stride``, required in ``_inductor_options``), which are the strides of the values dynamo
    traced, so those are the next piece's inputs as it will receive them.
    """
    fake_mode = detect_fake_mode(example_inputs) or torch._subclasses.fake_tensor.FakeTensorMode()
    values = [to_fake_tensor(value, fake_mode) if _is_real_tensor(value) else value for value in example_inputs]
    compiled = []
    for piece, args, compiler in zip(pieces, piece_args, compilers, strict=True):
        compiled.append(compiler(piece, [values[i] for i in args]))
        values += [node.meta["example_value"] for node in piece.graph.output_node().args[0]]
    return compiled


def _is_real_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and not isinstance(value, torch._subclasses.FakeTensor)


def fbc_backend(threshold: float = 0.05, *, compiler: str | Callable = "inductor", mode: str | None = None,
                options: dict | None = None) -> FBCBackend:
    """A First Block Cache backend for ``torch.compile``.

    ``threshold``: skip the blocks after the first when block 0's residual changed by at most this fraction
    (``mean|r - r_prev| / mean|r_prev|``) since the context's last computed call; 0 skips only identical calls.
    ``compiler``: the inner compiler of the pieces (head, each later block, tail): ``"inductor"`` (default),
    ``"eager"`` (for debugging the pass) or a callable ``(gm, example_inputs) -> callable``.
    ``mode`` / ``options``: as for ``torch.compile``; options may also hold ``threshold`` and ``compiler``.
    """
    return FBCBackend(threshold, compiler=compiler, mode=mode, options=options)


def registered_backend(gm: fx.GraphModule, example_inputs: list, mode: str | None = None,
                       options: dict | None = None) -> Callable:
    """``torch.compile(model, backend="fbc", options={"threshold": 0.1})``: one backend object per graph.

    Registered through the ``torch_dynamo_backends`` entry point (see pyproject.toml), so the name works before
    ``import fbc_compile``, as torch documents for third-party backends."""
    return FBCBackend(mode=mode, options=options)(gm, example_inputs)
