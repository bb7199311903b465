"""Bad or unusual input must fail clearly or stay correct: no blocks, shape and dtype changes, non-finite
residuals, memory, several models, grad mode, invalid arguments.

References: eager PyTorch, a plain ``torch.compile``, and diffusers' own First Block Cache hook (recorded by
``fbc_compile/reference.py``). Logic is checked with the eager inner compiler (the pieces then do the hook's
arithmetic in the hook's order, so its decisions and outputs are matched to float rounding); inductor is used
where the compiled result itself is the point (fallback compile, new graphs per shape, memory held by compiled
pieces, autograd).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import pickle
import warnings
import weakref

import pytest
import torch

import zoo
from fbc_compile import compilation_counter, fbc_backend
from fbc_compile.testing import count_compiles
from pipelines import PIPELINES, build_pipeline, call_kwargs

from helpers import context_of, generate, relative_error
from reference import record_hook_decisions

# Thresholds at which the zoo models' 8-step loop both computes and skips (the same loop as tests/test_backend).
THRESHOLDS = {"flux": 0.3, "hunyuan_video": 0.38, "wan": 0.085, "ltx_video": 0.1, "cogview4": 0.2}


class Stepper:
    """``helpers.denoise``'s loop, one step per call, so two models can be interleaved."""

    def __init__(self, model, spec: zoo.ModelSpec, steps: int = 8, *, seed: int = 0, batch: int = 1,
                 context: str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.model, self.spec, self.context = model, spec, context
        inputs = spec.make_inputs(batch, torch.Generator().manual_seed(seed))
        self.inputs = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                       for k, v in inputs.items()}
        self.latents = self.inputs[spec.latent].clone()
        self.buffer = torch.empty_like(self.latents)
        self.ts = torch.linspace(1.0, 0.0, steps + 1)
        self.i = 0

    def __call__(self) -> torch.Tensor:
        self.buffer.copy_(self.latents)
        batch = self.latents.shape[0]
        t = self.spec.make_timestep(float(self.ts[self.i]), batch).to(self.latents.dtype)
        with context_of(self.model, self.context), torch.no_grad():
            out = self.spec.velocity(self.model(**dict(self.inputs, **{self.spec.latent: self.buffer,
                                                                          self.spec.timestep: t})))
        self.latents = self.latents + (self.ts[self.i + 1] - self.ts[self.i]).item() * out
        self.i += 1
        return out.clone()


def hook_run(spec: zoo.ModelSpec, threshold: float, steps: int = 8, *, seed: int = 0, weights_seed: int = 0,
             restart_at: int | None = None, **stepper):
    """diffusers' hook on an eager model with the same weights: (decisions, outputs) of one loop.

    ``restart_at``: from that call on, the loop runs in a fresh cache context (the hook's state starts over).
    """
    model = spec.build(seed=weights_seed, dtype=stepper.get("dtype", torch.float32))
    record = record_hook_decisions(model, threshold)
    step = Stepper(model, spec, steps, seed=seed, context="cond", **stepper)
    outputs = []
    for i in range(steps):
        if i == restart_at:
            step.context = "restarted"
        outputs.append(step())
    return record.decisions["cond"] + record.decisions.get("restarted", []), outputs


def fbc_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "fbc_compile" in str(w.message)]


# --------------------------------------------------------------------------------------------------------------
# A graph the cache cannot use: compiled plainly, one warning naming the reason.


class ResidualBlock(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, width)

    def forward(self, x):
        return x + torch.nn.functional.gelu(self.linear(x))


class PlainMLP(torch.nn.Module):
    """No module list at all: the layers are attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 8)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _one_block_wan():
    spec = zoo.seed.wan(layers=1)
    return spec.build(), spec.make_inputs(1, torch.Generator().manual_seed(0))


def _plain_mlp():
    torch.manual_seed(0)
    return PlainMLP().eval(), {"x": torch.randn(4, 8)}


@pytest.mark.slow
@pytest.mark.parametrize("build, reason", [
    (_plain_mlp, "no repeated, indexed child modules"),
    (_one_block_wan, "only 1 block (blocks.0)"),
], ids=["plain-mlp", "wan-with-one-block"])
def test_no_block_sequence_falls_back_with_one_warning(build, reason, fresh_dynamo):
    """Inductor compiles the whole graph without the cache; the output is eager's; one warning says why."""
    model, inputs = build()
    compiled = torch.compile(model, backend=fbc_backend(0.1))
    with torch.no_grad():
        with pytest.warns(UserWarning) as record:
            first = compiled(**inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the next calls neither warn again nor recompile
            second = compiled(**inputs)
        expected = model(**inputs)
    messages = fbc_warnings(record)
    assert len(messages) == 1, messages
    assert reason in messages[0] and "without First Block Cache" in messages[0]
    for out in (first, second):
        out = out[0] if isinstance(out, tuple) else out
        ref = expected[0] if isinstance(expected, tuple) else expected
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert compilation_counter["fallbacks"] == 1 and compilation_counter["split_graphs"] == 0


# --------------------------------------------------------------------------------------------------------------
# Shapes and dtypes: each gets its own graph (dynamo guards on them); a cached residual never crosses them.


def test_pipeline_resolution_and_batch_changes(fresh_dynamo):
    """Flux at 16 px, then 32 px, then a batch of 2 at 32 px, then 16 px again: every generation decides as
    diffusers' hook does and gives its output. New shapes compile new graphs (dynamo's guards; with automatic
    dynamic shapes the second graph is a dynamic one) and never reuse another shape's cached residuals."""
    name = "flux"
    threshold = PIPELINES[name].threshold
    pipe = build_pipeline(name)
    backend = fbc_backend(threshold, compiler="eager")
    pipe.transformer = torch.compile(pipe.transformer, backend=backend)
    hooked = build_pipeline(name)
    record = record_hook_decisions(hooked.transformer, threshold)
    skipped = 0
    for size, batch in [(16, 1), (32, 1), (32, 2), (16, 1)]:
        kwargs = dict(steps=8, batch=batch, height=size, width=size)
        (ours,) = pipe(**call_kwargs(name, **kwargs))
        record.clear()
        (hook,) = hooked(**call_kwargs(name, **kwargs))
        assert ours.shape == hook.shape == (batch, (size // 2) ** 2, 16)
        ours_decisions = {ctx: s.decisions for ctx, s in backend.stats.items() if s.decisions}
        assert ours_decisions == record.decisions, f"{size}px x{batch}"
        skipped += sum(not d for ds in record.decisions.values() for d in ds)
        torch.testing.assert_close(ours, hook, rtol=1e-5, atol=1e-5, msg=f"{size}px x{batch}")
    assert skipped > 0
    assert 2 <= compilation_counter["split_graphs"] <= 3 and compilation_counter["fallbacks"] == 0


def test_dynamic_true_serves_eleven_resolutions_with_two_graphs(fresh_dynamo):
    """A server's many resolutions: with ``dynamic=True`` eleven Flux resolutions compile two graphs (dynamo
    specializes the first call's sizes of 1), never hit the recompile limit (8 entries, past which a frame runs
    eagerly with no cache), and every generation decides and outputs as diffusers' hook does."""
    name = "flux"
    threshold = PIPELINES[name].threshold
    pipe = build_pipeline(name)
    backend = fbc_backend(threshold, compiler="eager")
    pipe.transformer = torch.compile(pipe.transformer, backend=backend, dynamic=True)
    hooked = build_pipeline(name)
    record = record_hook_decisions(hooked.transformer, threshold)
    sizes = [(16, 16), (32, 32), (16, 32), (32, 16), (48, 32), (32, 48), (48, 48), (64, 32), (32, 64), (64, 48),
             (64, 64)]
    skipped = 0
    with count_compiles() as counts:
        for height, width in sizes:
            kwargs = dict(steps=6, height=height, width=width)
            (ours,) = pipe(**call_kwargs(name, **kwargs))
            record.clear()
            (hook,) = hooked(**call_kwargs(name, **kwargs))
            assert _decisions(backend) == record.decisions, (height, width)
            torch.testing.assert_close(ours, hook, rtol=1e-5, atol=1e-5, msg=f"{height}x{width}")
            skipped += sum(not d for ds in record.decisions.values() for d in ds)
    assert skipped > 0
    assert counts.graphs <= 2 and counts.frames_given_up == 0, counts
    assert counts.fbc.get("fallbacks", 0) == 0 and counts.fbc["split_graphs"] == counts.graphs


@pytest.mark.slow
def test_new_shapes_compile_new_graphs_with_inductor(fresh_dynamo):
    """Inductor, batch sizes 1, 2, 3 in turn, each a fresh loop in its own cache context: each batch's
    decisions are the hook's and its outputs are within 1e-4 of the hook's (inductor's rounding on these models
    is about 1e-6; a wrong decision or residual moves them by 1e-2); batch 2 brings a dynamic-shape graph that
    batch 3 reuses (its pieces compiled with symbolic sizes)."""
    spec = zoo.SEED["wan"]
    threshold = THRESHOLDS["wan"]
    backend = fbc_backend(threshold)
    ours = torch.compile(spec.build(), backend=backend)
    for batch in (1, 2, 3):
        context = f"batch{batch}"
        step = Stepper(ours, spec, 8, batch=batch, seed=batch, context=context)
        outputs = [step() for _ in range(8)]
        decisions, expected = hook_run(spec, threshold, 8, seed=batch, batch=batch)
        assert backend.stats[context].decisions == decisions, batch
        assert not all(decisions), batch
        for out, ref in zip(outputs, expected):
            assert relative_error(out, ref) <= 1e-4, batch
    assert compilation_counter["split_graphs"] == 2 and compilation_counter["fallbacks"] == 0


def test_shape_change_inside_one_graph_computes(fresh_dynamo):
    """``dynamic=True``: one graph serves batch sizes 3 and 5 (1 would get its own graph, since dynamo
    specializes size-1 dimensions, and 2 or 4 too, by duck sizing with Wan's 2 frames or 4 channels), so one
    cache state sees both. Interleaved runs of
    four calls per shape in the same context: the first call after each change of shape compares with
    nothing and computes; within a run the skips and outputs are the hook's on that shape's loop, restarted
    where ours had to restart."""
    spec = zoo.SEED["wan"]
    threshold = THRESHOLDS["wan"]
    model = spec.build()
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(model, backend=backend, dynamic=True)
    streams = {batch: Stepper(compiled, spec, 8, batch=batch, seed=seed, context="shared")
               for batch, seed in ((3, 0), (5, 1))}
    outputs = {3: [], 5: []}
    for batch in (3, 5, 3, 5):
        outputs[batch] += [streams[batch]() for _ in range(4)]
    assert compilation_counter["split_graphs"] == 1, "the premise: one graph for both shapes"
    stats = backend.stats["shared"]
    for i in (0, 4, 8, 12):
        assert stats.decisions[i] and stats.diffs[i] is None, (i, stats.decisions, stats.diffs)
    for computed, diff in zip(stats.decisions, stats.diffs):
        assert computed or (diff is not None and diff <= threshold)
    assert not all(stats.decisions)
    for batch, seed, calls in ((3, 0, [*range(0, 4), *range(8, 12)]), (5, 1, [*range(4, 8), *range(12, 16)])):
        decisions, expected = hook_run(spec, threshold, 8, seed=seed, batch=batch, restart_at=4)
        assert [stats.decisions[i] for i in calls] == decisions, batch
        for out, ref in zip(outputs[batch], expected):
            assert out.shape[0] == batch
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_dtype_change_gets_its_own_graph_and_state(fresh_dynamo):
    """float32 then bfloat16 (the model and its inputs): a new graph with its own state; its first call
    computes; each dtype's decisions and outputs are the hook's at that dtype."""
    spec = zoo.SEED["flux"]
    threshold = THRESHOLDS["flux"]
    model = spec.build()
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(model, backend=backend)
    ours = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        before = backend.stats["branch0"].calls if "branch0" in backend.stats else 0
        step = Stepper(compiled, spec, 8, dtype=dtype)
        outputs = [step() for _ in range(8)]
        stats = backend.stats["branch0"]
        ours[dtype] = (stats.decisions[before:], stats.diffs[before:], outputs)
    assert compilation_counter["split_graphs"] == 2
    for dtype, (decisions, diffs, outputs) in ours.items():
        assert diffs[0] is None, f"{dtype}: the first call compared with another dtype's residual"
        reference = spec.build(dtype=dtype)
        record = record_hook_decisions(reference, threshold)
        step = Stepper(reference, spec, 8, context="cond", dtype=dtype)
        expected = [step() for _ in range(8)]
        assert decisions == record.decisions["cond"], dtype
        assert not all(decisions), f"{dtype}: nothing skipped, the comparison proves little"
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        for out, ref in zip(outputs, expected):
            assert out.dtype == dtype
            torch.testing.assert_close(out, ref, rtol=tolerance, atol=tolerance)


# --------------------------------------------------------------------------------------------------------------
# Non-finite residuals: the guard computes; a skip never rests on a non-finite difference.


def _poison_block0(model, kind: str):
    """Make block 0's output non-finite for one call: an inf bias in its feed-forward, or a NaN latent."""
    bias = model.transformer_blocks[0].ff.net[2].bias
    saved = bias.detach().clone()

    @contextlib.contextmanager
    def poisoned():
        with torch.no_grad():
            bias.fill_(math.inf if kind == "inf" else math.nan)
        try:
            yield
        finally:
            with torch.no_grad():
                bias.copy_(saved)

    return poisoned


@pytest.mark.parametrize("kind", ["inf", "nan"])
def test_non_finite_residual_computes(kind, fresh_dynamo):
    """An extra call with block 0 poisoned (its output discarded, as a pipeline would discard a bad step) has a
    non-finite residual, and the next call compares with it: both compute (diffusers' hook would skip on a NaN
    difference, since ``nan > threshold`` is False). From then on decisions and outputs are exactly the hook's
    for a loop whose cache state starts at that call."""
    spec = zoo.SEED["flux"]
    threshold = 10.0  # every finite difference skips: only the guard's finiteness check can force a compute
    model = spec.build()
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(model, backend=backend)
    poisoned = _poison_block0(model, kind)
    step = Stepper(compiled, spec, 8)
    outputs = [step()]
    with poisoned(), torch.no_grad():
        step.buffer.copy_(step.latents)  # a new step for the implicit context (new tensor version)
        bad = compiled(**dict(step.inputs, hidden_states=step.buffer, timestep=torch.full((1,), 1.0)))[0]
    outputs += [step() for _ in range(7)]
    stats = backend.stats["branch0"]
    assert not torch.isfinite(bad).all()
    assert stats.decisions[:3] == [True, True, True], stats.diffs
    assert not math.isfinite(stats.diffs[1]) and not math.isfinite(stats.diffs[2]), stats.diffs
    assert stats.decisions[3:] == [False] * 6
    for computed, diff in zip(stats.decisions, stats.diffs):
        assert computed or (diff is not None and math.isfinite(diff) and diff <= threshold)
    decisions, expected = hook_run(spec, threshold, 8, restart_at=1)
    assert decisions == [True, True] + [False] * 6
    for out, ref in zip(outputs, expected):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert compilation_counter["graphs"] == 1  # editing a parameter in place recompiles nothing


# --------------------------------------------------------------------------------------------------------------
# Memory: the cache holds only the last computed call's residuals, and lets go of them at reset.


def live_tensor_bytes() -> int:
    """Bytes of every live CPU tensor storage (parameters excluded), counted once per storage."""
    gc.collect()
    storages = {}
    fake = torch._subclasses.fake_tensor.FakeTensor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gc.get_objects() meets deprecated module attributes
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and not isinstance(obj, (torch.nn.Parameter, fake)):
                if obj.device.type != "cpu":
                    continue
                try:
                    storage = obj.untyped_storage()
                except (RuntimeError, NotImplementedError):
                    continue
                if storage.data_ptr():
                    storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


@pytest.mark.slow
def test_pipeline_memory_is_flat_over_50_steps_and_freed_at_the_end(fresh_dynamo):
    """Inductor pieces, a 50-step CFG generation: the live tensor bytes are the same at every sampled step, and
    after the call nothing is left but the returned latents (the pipeline's reset drops the cache)."""
    name = "flux"
    pipe = build_pipeline(name)
    backend = fbc_backend(PIPELINES[name].threshold)
    pipe.transformer = torch.compile(pipe.transformer, backend=backend)
    pipe(**call_kwargs(name, steps=50))  # compile, and size the scheduler's arrays for 50 steps
    baseline = live_tensor_bytes()
    samples = {}

    def sample(_pipe, step, _t, _tensors):
        if step in (5, 15, 25, 35, 49):
            samples[step] = live_tensor_bytes()
        return {}

    (latents,) = pipe(**call_kwargs(name, steps=50), callback_on_step_end=sample)
    del sample
    after = live_tensor_bytes()
    assert sum(s.skips for s in backend.stats.values()) > 20, "the point is a loop that caches"
    assert len(set(samples.values())) == 1, samples
    held = samples[5] - baseline
    assert held > 0
    assert after - baseline == latents.untyped_storage().nbytes(), (baseline, after)


def test_backend_reset_frees_the_cached_tensors(fresh_dynamo):
    """Outside a pipeline nothing resets the cache: it holds block 0's residual and the tail residuals of the
    last computed call per context; ``backend.reset()`` frees exactly those."""
    spec = zoo.SEED["flux"]
    model = spec.build()
    backend = fbc_backend(THRESHOLDS["flux"], compiler="eager")
    compiled = torch.compile(model, backend=backend)
    Stepper(compiled, spec, 2)()  # compile
    backend.reset()
    baseline = live_tensor_bytes()
    for context in ("cond", "uncond"):
        step = Stepper(compiled, spec, 50, context=context)
        for _ in range(50):
            step()
        del step
    held = live_tensor_bytes() - baseline
    assert held > 0
    # no growth with the number of calls: ten more calls per context hold the same bytes
    for context in ("cond", "uncond"):
        step = Stepper(compiled, spec, 10, context=context, seed=1)
        for _ in range(10):
            step()
        del step
    assert live_tensor_bytes() - baseline == held
    backend.reset()
    assert live_tensor_bytes() == baseline
    assert backend.stats == {}


# --------------------------------------------------------------------------------------------------------------
# Several models.


def test_two_models_two_backends_keep_separate_state(fresh_dynamo):
    """Flux and Wan, interleaved call by call, each with its own backend: each decides as its own hook does."""
    names = ("flux", "wan")
    backends = {n: fbc_backend(THRESHOLDS[n], compiler="eager") for n in names}
    steppers = {n: Stepper(torch.compile(zoo.SEED[n].build(), backend=backends[n]), zoo.SEED[n]) for n in names}
    outputs = {n: [] for n in names}
    for _ in range(8):
        for n in names:
            outputs[n].append(steppers[n]())
    for n in names:
        decisions, expected = hook_run(zoo.SEED[n], THRESHOLDS[n])
        assert backends[n].stats["branch0"].decisions == decisions, n
        assert not all(decisions)
        for out, ref in zip(outputs[n], expected):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_one_backend_two_model_classes_keeps_state_per_graph(fresh_dynamo):
    """One backend object for Flux and Wan: two graphs, two states. The statistics merge by context name, so
    ``branch0`` holds both models' decisions interleaved, each the model's own hook's."""
    names = ("flux", "wan")
    threshold = 0.3  # skips on both (their differences are of different sizes)
    backend = fbc_backend(threshold, compiler="eager")
    steppers = {n: Stepper(torch.compile(zoo.SEED[n].build(), backend=backend), zoo.SEED[n]) for n in names}
    outputs = {n: [] for n in names}
    for _ in range(8):
        for n in names:
            outputs[n].append(steppers[n]())
    assert compilation_counter["split_graphs"] == 2
    merged = backend.stats["branch0"].decisions
    for k, n in enumerate(names):
        decisions, expected = hook_run(zoo.SEED[n], threshold)
        assert merged[k::2] == decisions, n
        assert not all(decisions), n
        for out, ref in zip(outputs[n], expected):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_one_backend_two_instances_of_one_class_keeps_separate_state(fresh_dynamo):
    """Two instances of one class (different weights) with one backend share one dynamo graph (dynamo does not
    guard on the module's identity; parameters are graph inputs), as Wan 2.2's two transformers would: each
    instance must still keep its own state, and decide and output as its own hook does."""
    spec = zoo.SEED["flux"]
    threshold = THRESHOLDS["flux"]
    backend = fbc_backend(threshold, compiler="eager")
    models = {seed: torch.compile(spec.build(seed=seed), backend=backend) for seed in (0, 1)}
    steppers = {seed: Stepper(model, spec, seed=seed) for seed, model in models.items()}
    outputs = {seed: [] for seed in models}
    for _ in range(8):
        for seed in models:
            outputs[seed].append(steppers[seed]())
    merged = backend.stats["branch0"].decisions
    for k, seed in enumerate(models):
        decisions, expected = hook_run(spec, threshold, seed=seed, weights_seed=seed)
        assert merged[k::2] == decisions, seed
        for out, ref in zip(outputs[seed], expected):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_first_call_belongs_to_its_named_context_with_repeated_latents(fresh_dynamo):
    """The compiling call runs before the backend's diffusers hook exists, yet it must count in the
    ``cache_context`` it was made in: two calls on one unmodified latent tensor inside ``cache_context("cond")``
    are the hook's compute-then-skip (difference 0), all under "cond"."""
    spec = zoo.SEED["flux"]
    model = spec.build()
    backend = fbc_backend(0.1, compiler="eager")
    compiled = torch.compile(model, backend=backend)
    inputs = spec.make_inputs(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for _ in range(2):
            with compiled.cache_context("cond"):
                compiled(**inputs)
    reference = spec.build()
    record = record_hook_decisions(reference, 0.1)
    with torch.no_grad():
        for _ in range(2):
            with reference.cache_context("cond"):
                reference(**inputs)
    assert record.decisions == {"cond": [True, False]}
    assert {name: s.decisions for name, s in backend.stats.items()} == record.decisions


# --------------------------------------------------------------------------------------------------------------
# Grad mode: never skips, the same values and gradients as a plain compile.


def _flat_grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.slow
def test_grad_enabled_never_skips_and_equals_plain_compile(fresh_dynamo):
    """With grad enabled the cache computes every call (a threshold every difference meets notwithstanding):
    outputs and parameter gradients are plain ``torch.compile``'s, within the distance between plain compile and
    eager. Back under ``no_grad`` the same compiled model caches again."""
    spec = zoo.SEED["wan"]
    models = {kind: spec.build() for kind in ("ours", "plain", "eager")}
    backend = fbc_backend(10.0)
    compiled = {"ours": torch.compile(models["ours"], backend=backend), "plain": torch.compile(models["plain"]),
                "eager": models["eager"]}
    inputs = spec.make_inputs(1, torch.Generator().manual_seed(0))
    for i in range(3):  # new latent tensors: consecutive steps, each of which would skip without grad
        kwargs = dict(inputs, hidden_states=inputs["hidden_states"] * (1 + 1e-3 * i))
        out = {kind: model(**kwargs)[0] for kind, model in compiled.items()}
        for value in out.values():
            value.square().mean().backward()
        noise = max(relative_error(out["plain"], out["eager"]), 1e-6)
        assert relative_error(out["ours"], out["plain"]) <= 5 * noise
    assert backend.stats["branch0"].decisions == [True, True, True]
    assert backend.stats["branch0"].diffs == [None, None, None]
    grads = {kind: _flat_grads(model) for kind, model in models.items()}
    grad_noise = max(relative_error(grads["plain"], grads["eager"]), 1e-6)
    assert relative_error(grads["ours"], grads["plain"]) <= 5 * grad_noise
    with torch.no_grad():
        compiled["ours"](**inputs), compiled["ours"](**dict(inputs, hidden_states=inputs["hidden_states"].clone()))
    assert backend.stats["branch0"].decisions[-2:] == [True, False]


# --------------------------------------------------------------------------------------------------------------
# Invalid arguments: a ValueError or TypeError that names the parameter and what it accepts.


@pytest.mark.parametrize("call", [lambda: build_pipeline("sdxl"), lambda: call_kwargs("flux2")])
def test_unknown_pipeline_names_the_choices(call):
    with pytest.raises(ValueError) as info:
        call()
    for name in PIPELINES:
        assert name in str(info.value)


# --------------------------------------------------------------------------------------------------------------
# Serving patterns: inference mode, float64, several pipelines, hand-written loops, state that outlives its model.


def _hook_generation(name: str, threshold: float, **kwargs):
    """diffusers' hook on an eager copy of the tiny pipeline ``name``: (decisions per context, output)."""
    hooked = build_pipeline(name)
    record = record_hook_decisions(hooked.transformer, threshold)
    (output,) = hooked(**call_kwargs(name, **kwargs))
    return {ctx: list(ds) for ctx, ds in record.decisions.items()}, output


def _decisions(backend) -> dict:
    return {ctx: list(stats.decisions) for ctx, stats in backend.stats.items() if stats.decisions}


def test_inference_mode_pipelines_and_hand_loops_decide_as_the_hook(fresh_dynamo):
    """``with torch.inference_mode(): pipe(...)`` (inference tensors have no version counter) decides and
    outputs as diffusers' hook does, and so does a hand-written CFG loop under inference mode, with no contexts."""
    name, threshold = "flux", PIPELINES["flux"].threshold
    pipe = build_pipeline(name)
    backend = fbc_backend(threshold, compiler="eager")
    pipe.transformer = torch.compile(pipe.transformer, backend=backend)
    with torch.inference_mode():
        (ours,) = pipe(**call_kwargs(name, steps=8))
    decisions, expected = _hook_generation(name, threshold, steps=8)
    assert _decisions(backend) == decisions and not all(decisions["cond"])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)

    spec, threshold = zoo.SEED["wan"], THRESHOLDS["wan"]
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(spec.build(), backend=backend)
    with torch.inference_mode():
        ours, _ = generate(compiled, spec, 8, cfg=True)
    reference = spec.build()
    record = record_hook_decisions(reference, threshold)
    expected, _ = generate(reference, spec, 8, cfg=True, context=True)
    assert [backend.stats["branch0"].decisions, backend.stats["branch1"].decisions] == [
        record.decisions["cond"], record.decisions["uncond"]]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_float64_model_compiles_and_decides_as_the_hook(fresh_dynamo):
    spec, threshold = zoo.SEED["wan"], THRESHOLDS["wan"]
    backend = fbc_backend(threshold, compiler="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        ours = [step() for step in [Stepper(torch.compile(spec.build(dtype=torch.float64), backend=backend), spec,
                                            dtype=torch.float64)] for _ in range(8)]
    decisions, expected = hook_run(spec, threshold, dtype=torch.float64)
    assert backend.stats["branch0"].decisions == decisions and not all(decisions)
    for out, ref in zip(ours, expected):
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_two_pipelines_one_backend_each_reset_reaches_its_own_state(fresh_dynamo):
    """Two instances of one class in two pipelines, one backend (one shared graph): each pipeline's end-of-call
    reset forgets its own model's state and only that, so generations alternating between the pipelines (at a
    threshold that skips almost everything) each start with a full compute and decide as the hook does; a reset
    of one model in the middle of the other's loop does not disturb that loop."""
    name, threshold = "flux", 2.0
    backend = fbc_backend(threshold, compiler="eager")
    pipes = [build_pipeline(name, seed=seed) for seed in (0, 1)]
    for pipe in pipes:
        pipe.transformer = torch.compile(pipe.transformer, backend=backend)
    for pipe, seed in [*zip(pipes, (0, 1)), *zip(pipes, (0, 1))]:
        (ours,) = pipe(**call_kwargs(name, steps=6))
        hooked = build_pipeline(name, seed=seed)
        record = record_hook_decisions(hooked.transformer, threshold)
        (expected,) = hooked(**call_kwargs(name, steps=6))
        assert _decisions(backend) == record.decisions, seed
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert compilation_counter["split_graphs"] == 1

    spec = zoo.SEED["flux"]
    models = [torch.compile(spec.build(seed=seed), backend=backend) for seed in (0, 1)]
    step = Stepper(models[1], spec, 8, seed=1, context="cond")
    backend.reset()
    outputs = []
    for i in range(8):
        if i == 4:
            models[0]._reset_stateful_cache()  # the other model's pipeline ends its call
        outputs.append(step())
    decisions, expected = hook_run(spec, threshold, seed=1, weights_seed=1)
    assert backend.stats["cond"].decisions == decisions
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("latents", ["clone per branch", "updated through .data", "numpy-backed, updated in place"])
def test_hand_written_cfg_loops_keep_cond_and_uncond_apart(latents, fresh_dynamo):
    """A CFG loop with no cache contexts, whatever it does to its latents: cond and uncond calls are told apart
    by their text embeddings, and decide and output as the hook does with contexts."""
    spec, threshold = zoo.SEED["wan"], THRESHOLDS["wan"]
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(spec.build(), backend=backend)
    inputs = spec.inputs()
    branches = [("cond", {}), ("uncond", spec.uncond(inputs))]
    x = inputs["hidden_states"].clone()
    buffer = torch.from_numpy(x.numpy().copy()) if latents.startswith("numpy") else x.clone()  # (not a clone's)
    ts = torch.linspace(1.0, 0.0, 9)
    with torch.no_grad():
        for i in range(8):
            if latents == "updated through .data":
                buffer.data = x.clone()
            elif latents.startswith("numpy"):
                buffer.numpy()[...] = x.numpy()  # no version bump
            step = dict(timestep=spec.make_timestep(float(ts[i]), 1))
            velocities = [compiled(**dict(inputs, **over, **step,
                                          hidden_states=x.clone() if latents == "clone per branch" else buffer))[0]
                          for _, over in branches]
            x = x + (ts[i + 1] - ts[i]).item() * (velocities[1] + 2.0 * (velocities[0] - velocities[1]))
    reference = spec.build()
    record = record_hook_decisions(reference, threshold)
    expected, _ = generate(reference, spec, 8, cfg=True, context=True)
    assert backend.stats["branch0"].decisions == record.decisions["cond"]
    assert backend.stats["branch1"].decisions == record.decisions["uncond"]
    assert not all(record.decisions["cond"])
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)


def test_a_benchmark_loop_on_one_tensor_skips_and_keeps_one_state(fresh_dynamo):
    """Timing a step by calling the model again and again on one unmodified latent tensor: every call after the
    first skips (nothing changed), and the cache holds one context's tensors however many calls were made."""
    spec = zoo.SEED["wan"]
    backend = fbc_backend(0.05, compiler="eager")
    compiled = torch.compile(spec.build(), backend=backend)
    inputs = spec.inputs()
    with torch.no_grad():
        compiled(**inputs)
        held = len(backend._states.tensors())
        for _ in range(20):
            compiled(**inputs)
    assert backend.stats["branch0"].decisions == [True] + [False] * 20
    assert len(backend._states.tensors()) == held


def test_a_shape_seen_before_never_compares_with_its_older_residual(fresh_dynamo):
    """In one cache context: batch 1, then 2, then 1 again, then both calling conventions (``return_dict``): each
    change is another graph, and the first call after it compares with nothing (the context's last computed call
    was made by another graph) and computes, as the hook does in a context that starts over there."""
    spec, threshold = zoo.SEED["wan"], 2.0
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(spec.build(), backend=backend)
    runs = [dict(batch=1), dict(batch=2), dict(batch=1), dict(batch=1, return_dict=True)]
    with torch.no_grad():
        for run in runs:
            inputs = dict(spec.inputs(run["batch"]), return_dict=run.get("return_dict", False))
            for _ in range(3):
                with compiled.cache_context("cond"):
                    compiled(**inputs)
    decisions = backend.stats["cond"].decisions
    diffs = backend.stats["cond"].diffs
    assert decisions == [True, False, False] * len(runs), decisions
    assert [diffs[i] for i in range(0, 12, 3)] == [None] * 4


def test_state_is_freed_with_its_model(fresh_dynamo):
    """No ``torch._dynamo.reset()``: deleting the model (its compiled wrapper and the backend too) frees the
    cached tensors, and so does reloading its weights with ``load_state_dict(assign=True)``. A server naming
    every request keeps at most ``MAX_CONTEXTS`` contexts per model."""
    from fbc_compile.state import MAX_CONTEXTS

    spec = zoo.SEED["wan"]
    backend = fbc_backend(0.1, compiler="eager")
    model = spec.build()
    compiled = torch.compile(model, backend=backend)
    inputs = spec.inputs()  # (an implicit context lives as long as its conditioning tensors)
    with torch.no_grad():
        compiled(**inputs)
        stored = weakref.ref(backend._states.tensors()[0])
        model.load_state_dict(spec.build(seed=1).state_dict(), assign=True)
        gc.collect()
        assert stored() is None, "a reload replaces the parameters: their state goes with them"
        for request in range(MAX_CONTEXTS + 8):
            with compiled.cache_context(f"request-{request}"):
                compiled(**spec.inputs())
        per_context = 1 + 1  # r_prev and Wan's one tail residual
        assert len(backend._states.tensors()) == MAX_CONTEXTS * per_context
        stored = weakref.ref(backend._states.tensors()[0])
    del model, compiled, backend
    gc.collect()
    assert stored() is None


def test_a_compiled_model_still_pickles(fresh_dynamo, tmp_path):
    """The backend's diffusers hook stays on the model; ``torch.save`` and ``pickle`` work as after a plain
    compile, and the loaded model is inert until it is compiled again."""
    spec = zoo.SEED["wan"]
    model = spec.build()
    compiled = torch.compile(model, backend=fbc_backend(0.1, compiler="eager"))
    with torch.no_grad():
        expected = compiled(**spec.inputs())[0]
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        torch.testing.assert_close(loaded(**spec.inputs())[0], expected)


def test_a_deepcopy_of_a_compiled_model_reaches_the_same_backend(fresh_dynamo):
    """``copy.deepcopy(compiled)`` copies the model, not the backend: the copy's calls land in the backend the
    user holds (its stats, threshold and reset), in a state of their own that starts by computing, and decide as
    the hook does on the same weights."""
    spec, threshold = zoo.SEED["flux"], THRESHOLDS["flux"]
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(spec.build(), backend=backend)
    first, _ = generate(compiled, spec, 8, context=True)
    original_decisions = list(backend.stats["cond"].decisions)
    copied = copy.deepcopy(compiled)
    backend.stats.clear()
    second, _ = generate(copied, spec, 8, context=True)
    decisions, expected = hook_run(spec, threshold, 8)
    assert backend.stats["cond"].decisions == original_decisions == decisions and not all(decisions)
    torch.testing.assert_close(second, first, rtol=1e-5, atol=1e-5)
    assert len(backend._states.tensors()) > 0
    backend.reset()
    assert backend._states.tensors() == []


@pytest.mark.parametrize("order", ["fbc first", "hook first"])
def test_another_compile_of_the_class_taking_over_is_reported(order, fresh_dynamo):
    """Every diffusers transformer shares one ``forward``: once another compile of the class breaks a graph in it
    (diffusers' hook + torch.compile does), dynamo gives the code up for every backend, and fbc's model runs
    without the cache. Whichever is compiled first, the user is told, with the way out."""
    from diffusers import FirstBlockCacheConfig

    spec = zoo.SEED["flux"]
    ours = torch.compile(spec.build(), backend=fbc_backend(1e6, compiler="eager"))
    other = spec.build()
    other.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    other = torch.compile(other, backend="eager")
    first, second = (ours, other) if order == "fbc first" else (other, ours)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        for model in (first, second, ours, ours, ours):
            with model.cache_context("cond"):
                model(**spec.inputs())
    messages = fbc_warnings(caught)
    assert any("never reached the graph fbc compiled" in m or "runs without dynamo" in m for m in messages), messages
