"""The pass's logic with the eager inner compiler: block location, contexts, state, conventions, errors.

Numerical parity with inductor against diffusers' hook lives in test_parity.py; here the pieces run eagerly,
so the decisions and outputs must equal the hook's and eager PyTorch's exactly or to float rounding.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import warnings
import weakref

import pytest
import torch

import zoo
from fbc_compile import compilation_counter, fbc_backend
from fbc_compile.passes.locate import locate_blocks, module_path
from helpers import generate
from reference import record_hook_decisions


def recorder(graphs: list):
    """A compiler that keeps each graph it is given in ``graphs`` and runs it as it is."""
    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    return record


def traced_graph(model, inputs):
    graphs = []
    with torch.no_grad():
        torch.compile(model, backend=recorder(graphs), fullgraph=True)(**inputs)
    return graphs[0]


def inputs_of(spec, batch=1, seed=0):
    return spec.make_inputs(batch, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spelling", [
    "L['self'].transformer_blocks.0.attn",
    "L['self'].__dict__['_modules']['transformer_blocks'].0.attn",
    "L['self'].transformer_blocks[0].attn",
    "L['self']._modules['transformer_blocks']._modules['0'].attn",
    'L["self"]._modules["transformer_blocks"]._modules["0"].attn',
    "self.transformer_blocks.0.attn",
    "L['function_reference'].forward.__self__.__dict__['_modules']['transformer_blocks'].0.attn",
])
def test_module_path_reads_every_spelling(spelling):
    assert module_path(spelling) == ("transformer_blocks", "0", "attn")


EXPECTED_BLOCKS = {
    "flux": ["transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0", "single_transformer_blocks.1"],
    # The text refiner's `context_embedder.token_refiner.refiner_blocks` is nested: it stays in the prologue.
    "hunyuan_video": ["transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0",
                      "single_transformer_blocks.1"],
    "wan": ["blocks.0", "blocks.1", "blocks.2"],
    "ltx_video": ["transformer_blocks.0", "transformer_blocks.1", "transformer_blocks.2"],
    "cogview4": ["transformer_blocks.0", "transformer_blocks.1", "transformer_blocks.2"],
}


@pytest.mark.parametrize("name", list(zoo.SEED))
def test_locate_blocks_finds_the_sequence_diffusers_hooks(name, fresh_dynamo):
    spec = zoo.SEED[name]
    blocks = locate_blocks(traced_graph(spec.build(), inputs_of(spec)))
    assert [block.name for block in blocks] == EXPECTED_BLOCKS[name]


@pytest.mark.parametrize("name", list(zoo.SEED))
def test_eager_pieces_equal_the_hook_exactly(name, fresh_dynamo):
    """With eager pieces the cache does the hook's arithmetic in the hook's order: same decisions, same bits."""
    spec = zoo.SEED[name]
    threshold = {"flux": 0.3, "hunyuan_video": 0.38, "wan": 0.085, "ltx_video": 0.1, "cogview4": 0.2}[name]
    backend = fbc_backend(threshold, compiler="eager")
    ours, _ = generate(torch.compile(spec.build(), backend=backend, fullgraph=True), spec, 8)
    reference = spec.build()
    hook = record_hook_decisions(reference, threshold)
    expected, _ = generate(reference, spec, 8, context=True)
    assert backend.stats["branch0"].decisions == hook.decisions["cond"]
    assert backend.stats["branch0"].skips > 0
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    assert compilation_counter["pieces"] == len(EXPECTED_BLOCKS[name]) + 1  # head, each later block, tail


@pytest.mark.parametrize("name", list(zoo.SEED))
def test_every_piece_is_cacheable_by_aot_autograd(name, fresh_dynamo):
    """AOTAutograd's cache (what makes a warm start cheap) takes a piece only if each op in it is one it knows to
    be safe; the ops the split adds must be too. Checked with its own test, per model, for the pieces as built
    for inference and for training."""
    from torch._functorch._aot_autograd.autograd_cache import check_cacheable

    spec = zoo.SEED[name]
    pieces = []
    backend = fbc_backend(0.1, compiler=recorder(pieces))
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            torch.compile(spec.build(), backend=backend, fullgraph=True)(**inputs_of(spec))
    assert len(pieces) == 2 * (len(EXPECTED_BLOCKS[name]) + 1)
    for piece in pieces:
        check_cacheable(piece)


def test_backend_name_works_before_the_package_is_imported():
    """``backend="fbc"`` is found through the ``torch_dynamo_backends`` entry point, which imports the package."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "compiled = torch.compile(torch.nn.Linear(2, 2), backend='fbc', options={'compiler': 'eager'})\n"
            "compiled(torch.randn(1, 2))\n"
            "print('fbc_compile' in sys.modules)")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True"]


@pytest.fixture
def wan():
    spec = zoo.SEED["wan"]
    return spec, spec.build()


def test_registered_backend_name_and_options(wan, fresh_dynamo):
    spec, model = wan
    compiled = torch.compile(model, backend="fbc", options={"threshold": 0.5, "compiler": "eager"}, fullgraph=True)
    inputs = inputs_of(spec)
    with torch.no_grad():
        first = compiled(**inputs)[0]
        # The same values in a new latent tensor: the next step of branch 0, diff 0, a skip.
        second = compiled(**dict(inputs, hidden_states=inputs["hidden_states"].clone()))[0]
    torch.testing.assert_close(second, first, rtol=1e-5, atol=1e-6)
    assert compilation_counter["split_graphs"] == 1
    assert compiled._orig_mod._diffusers_hook.get_hook("fbc_compile") is not None


def test_mode_is_accepted_and_cuda_graphs_declined_with_a_warning(wan, fresh_dynamo):
    spec, model = wan
    with pytest.warns(UserWarning, match="CUDA graphs"):
        compiled = torch.compile(model, backend=fbc_backend(compiler="eager"), mode="reduce-overhead")
        with torch.no_grad():
            compiled(**inputs_of(spec))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"threshold": -0.1}, ValueError, ["threshold", ">= 0"]),
    ({"threshold": math.nan}, ValueError, ["threshold"]),
    ({"threshold": "0.1"}, TypeError, ["threshold", "real number"]),
    ({"threshold": None}, TypeError, ["threshold", "real number"]),
    ({"threshold": True}, TypeError, ["threshold"]),
    ({"compiler": "tvm"}, ValueError, ["compiler", "'inductor'", "'eager'", "callable"]),
    ({"compiler": None}, ValueError, ["compiler", "'inductor'", "'eager'", "callable"]),
    ({"options": {"treshold": 0.1}}, ValueError, ["'treshold'", "threshold", "compiler"]),
    ({"options": {"threshold": math.nan}}, ValueError, ["threshold"]),
    ({"options": 3}, TypeError, ["options", "dict"]),
    ({"options": {"keep_output_stride": False}}, ValueError, ["keep_output_stride", "True"]),
    ({"mode": 3}, TypeError, ["mode"]),
    ({"mode": "fast"}, ValueError, ["mode", "'reduce-overhead'", "'max-autotune'", "None"]),
])
def test_bad_arguments_name_the_parameter(kwargs, error, words):
    with pytest.raises(error) as info:
        fbc_backend(**kwargs)
    assert all(word in str(info.value) for word in words), str(info.value)
    assert str(info.value).count("None") <= 1, str(info.value)


def test_threshold_setter_keeps_the_old_value_on_error():
    backend = fbc_backend(0.2)
    for bad, error in ((-0.5, ValueError), (math.nan, ValueError), ("high", TypeError)):
        with pytest.raises(error, match="threshold"):
            backend.threshold = bad
    assert backend.threshold == 0.2


def test_registered_backend_rejects_bad_options_at_compile(fresh_dynamo):
    """``backend="fbc"`` receives its options when dynamo compiles: the error surfaces on the first call,
    wrapped by dynamo, still naming the parameter."""
    compiled = torch.compile(torch.nn.Linear(2, 2), backend="fbc", options={"threshold": -1})
    with pytest.raises(Exception, match=r"threshold must be a real number >= 0"):
        compiled(torch.randn(1, 2))


class ResidualBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)

    def forward(self, x):
        return x + self.linear(x).relu()


class MLP(torch.nn.Module):
    def __init__(self, blocks: int = 0):
        super().__init__()
        self.proj_in = torch.nn.Linear(8, 16)
        self.blocks = torch.nn.ModuleList(ResidualBlock() for _ in range(blocks))
        self.proj_out = torch.nn.Linear(16, 8)

    def forward(self, x):
        x = self.proj_in(x)
        for block in self.blocks:
            x = block(x)
        return self.proj_out(x)


@pytest.mark.parametrize("blocks, reason", [(0, "no repeated, indexed child"), (1, "only 1 block")])
def test_unsplittable_graph_compiles_plainly_with_one_warning(blocks, reason, fresh_dynamo):
    model = MLP(blocks).eval()
    x = torch.randn(4, 8)
    with pytest.warns(UserWarning) as warned:
        out = torch.compile(model, backend=fbc_backend(compiler="eager"), fullgraph=True)(x)
    messages = [str(w.message) for w in warned if "fbc_compile" in str(w.message)]
    assert len(messages) == 1 and reason in messages[0], messages
    torch.testing.assert_close(out, model(x))
    assert compilation_counter["fallbacks"] == 1 and compilation_counter["pieces"] == 1


def _add_one(out):
    out += 1


def _double(out):
    out.mul_(2)


def _zero_first_column(out):
    out[:, 0] = 0


class InPlaceTail(MLP):
    """The output layers write in place, into the output they computed (``before=False``) or into the last block's
    output, which the body hands them (``before=True``)."""

    def __init__(self, mutate, before: bool):
        super().__init__(3)
        self.mutate, self.before = mutate, before

    def forward(self, x):
        x = self.proj_in(x)
        for block in self.blocks:
            x = block(x)
        if self.before:
            self.mutate(x)
        out = self.proj_out(x)
        if not self.before:
            self.mutate(out)
        return out


@pytest.mark.parametrize("mutate", [_add_one, _double, _zero_first_column])
def test_output_layers_that_write_into_their_own_tensor_split(mutate, fresh_dynamo):
    """The head runs a copy of the output layers ahead of the decision; a write into a tensor the output layers
    allocated is a write into the copy's own tensor, so the graph splits and both a computed and a skipped call
    return what eager PyTorch returns for them (the skip: the output layers on block 0's output plus the residual
    the other blocks added last time)."""
    model = InPlaceTail(mutate, before=False).eval()
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    backend = fbc_backend(1e6, compiler="eager")
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")
        computed, skipped = compiled(x), compiled(y)
        expected = model(x)
        h0_x, h0_y = model.blocks[0](model.proj_in(x)), model.blocks[0](model.proj_in(y))
        residual = model.blocks[2](model.blocks[1](h0_x)) - h0_x
        skip = model.proj_out(h0_y + residual)
        mutate(skip)
    assert backend.stats["branch0"].decisions == [True, False]
    torch.testing.assert_close(computed, expected)
    torch.testing.assert_close(skipped, skip)


@pytest.mark.parametrize("mutate", [_add_one, _double, _zero_first_column])
def test_output_layers_that_write_into_the_blocks_output_compile_plainly_with_one_warning(mutate, fresh_dynamo):
    """A write into the value the body hands the output layers would, in the head's copy, land in block 0's
    output, which the body still reads: such a graph is refused with its reason and compiled plainly."""
    model = InPlaceTail(mutate, before=True).eval()
    x = torch.randn(4, 8)
    with pytest.warns(UserWarning) as warned, torch.no_grad():
        out = torch.compile(model, backend=fbc_backend(compiler="eager"), fullgraph=True)(x)
    messages = [str(w.message) for w in warned if "fbc_compile" in str(w.message)]
    assert len(messages) == 1 and "modify tensors in place" in messages[0], messages
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))
    assert compilation_counter["fallbacks"] == 1


def test_any_failure_to_split_falls_back_with_one_warning(fresh_dynamo):
    """Whatever goes wrong while the graph is located, split or its pieces compiled (here an inner compiler that
    takes whole dynamo graphs only), the graph is compiled as it is, with one warning that says why."""

    def whole_graphs_only(gm, example_inputs):
        if any(node.name.startswith(("fbc_", "input_")) for node in gm.graph.find_nodes(op="placeholder")):
            raise RuntimeError("this compiler takes whole dynamo graphs only")
        return gm.forward

    spec = zoo.SEED["wan"]
    model = spec.build()
    with pytest.warns(UserWarning) as warned, torch.no_grad():
        out = torch.compile(model, backend=fbc_backend(compiler=whole_graphs_only), fullgraph=True)(**inputs_of(spec))
        expected = model(**inputs_of(spec))
    messages = [str(w.message) for w in warned if "fbc_compile" in str(w.message)]
    assert len(messages) == 1, messages
    assert "splitting the graph failed (RuntimeError: this compiler takes whole dynamo graphs only)" in messages[0]
    torch.testing.assert_close(out[0], expected[0])
    assert compilation_counter["fallbacks"] == 1 and compilation_counter["split_graphs"] == 0


def test_two_blocks_of_a_plain_model_split(fresh_dynamo):
    """Generic detection: any module with a list of repeated blocks, not a list of diffusers model names."""
    model = MLP(3).eval()
    backend = fbc_backend(10.0, compiler="eager")
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    x = torch.randn(4, 8)
    with torch.no_grad():
        first = compiled(x)
        compiled(x + 1e-3)
    assert backend.stats["branch0"].decisions == [True, False]
    assert compilation_counter["split_graphs"] == 1
    torch.testing.assert_close(first, model(x))


def test_a_skipped_call_is_the_head_piece_alone(fresh_dynamo):
    """The head also computes what a skipped call returns, so a skip runs no other piece; its output is the
    output layers applied to block 0's output plus the residual blocks 1..N-1 added at the last computed call
    (float64 reference)."""
    torch.manual_seed(0)
    model = MLP(3).eval()
    calls = []

    def counting(gm, example_inputs):
        piece = len(calls)
        calls.append(0)

        def run(*args):
            calls[piece] += 1
            return gm.forward(*args)
        return run

    backend = fbc_backend(10.0, compiler=counting)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    xs = [torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        outputs = [compiled(x) for x in xs]
    assert backend.stats["branch0"].decisions == [True, False]
    assert calls == [2, 1, 1, 1], "head, blocks 1 and 2, tail calls over one computed and one skipped call"

    reference = copy.deepcopy(model).double()
    with torch.no_grad():
        computed, skipped = (reference.blocks[0](reference.proj_in(x.double())) for x in xs)
        rest = computed
        for block in reference.blocks[1:]:
            rest = block(rest)
        expected = reference.proj_out(skipped + (rest - computed))
    torch.testing.assert_close(outputs[1].double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad", [False, True])
def test_the_head_computes_the_skip_only_in_a_graph_that_can_skip(grad, fresh_dynamo):
    """An inference graph's head also runs the output projection (the skip's outputs); a graph traced with grad
    enabled never skips, so its head does not, and it still computes what eager autograd computes."""
    torch.manual_seed(0)
    model = MLP(3)
    pieces = []
    compiled = torch.compile(model, backend=fbc_backend(10.0, compiler=recorder(pieces)), fullgraph=True)
    x = torch.randn(4, 8)
    with torch.set_grad_enabled(grad):
        out = compiled(x)
    linears = [len(piece.graph.find_nodes(op="call_function", target=torch._C._nn.linear)) for piece in pieces]
    expected = [2, 1, 1, 1] if grad else [3, 1, 1, 1]
    assert linears == expected, "head: proj_in, block 0 (and proj_out); blocks 1 and 2; tail"
    torch.testing.assert_close(out, model(x))
    if grad:
        out.sum().backward()
        compiled_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        model(x).sum().backward()
        torch.testing.assert_close(compiled_grads, [p.grad for p in model.parameters()])


def test_head_piece_computes_the_difference_norm(fresh_dynamo):
    """The guard's norm is traced into the head piece (the guard only reads it), and equals the float64 value
    of ``mean|r - r_prev| / mean|r_prev|`` over block 0's residuals."""
    torch.manual_seed(0)
    model = MLP(3).eval()
    pieces = []
    backend = fbc_backend(0.0, compiler=recorder(pieces))
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    xs = [torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        for x in xs:
            compiled(x)
    norm = torch.ops.fbc_compile.residual_diff.default
    assert [len(piece.graph.find_nodes(op="call_function", target=norm)) for piece in pieces] == [1, 0, 0, 0]

    reference = copy.deepcopy(model).double()
    with torch.no_grad():
        hidden = [reference.proj_in(x.double()) for x in xs]
        r_prev, r = (reference.blocks[0](h) - h for h in hidden)
    expected = ((r - r_prev).abs().mean() / r_prev.abs().mean()).item()
    diffs = backend.stats["branch0"].diffs
    assert diffs[0] is None and diffs[1] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")),
])
def test_inductor_head_computes_the_norm_and_the_guard_decides_on_it(device, fresh_dynamo):
    """With inductor the op is compiled into the head (fused on CPU; on GPU its Triton kernel is launched from
    the compiled code): the diffs are the float64 values and the decisions follow them."""
    torch.manual_seed(0)
    model = MLP(3).eval().to(device)
    xs = [torch.randn(4, 8, generator=torch.Generator().manual_seed(i)).to(device) for i in range(3)]
    reference = copy.deepcopy(model).double()
    with torch.no_grad():
        hidden = [reference.proj_in(x.double()) for x in xs]
        residuals = [reference.blocks[0](h) - h for h in hidden]
    first, second, third = residuals
    expected = [None, ((second - first).abs().mean() / first.abs().mean()).item()]
    # A threshold above the second diff: call 2 skips, and call 3 compares with call 1 (the last computed one).
    expected.append(((third - first).abs().mean() / first.abs().mean()).item())
    backend = fbc_backend(expected[1] * 1.01)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        for x in xs:
            compiled(x)
    stats = backend.stats["branch0"]
    assert stats.diffs[0] is None
    assert stats.diffs[1:] == [pytest.approx(d, rel=1e-5) for d in expected[1:]]
    assert stats.decisions == [True, False, not expected[2] <= backend.threshold]
    assert compilation_counter["split_graphs"] == 1 and compilation_counter["pieces"] == 4


def test_a_warm_start_loads_every_piece_from_the_autograd_cache(fresh_dynamo):
    """A new process (here: dynamo reset) compiling the same model finds all four pieces in AOTAutograd's cache
    instead of tracing them again, as plain torch.compile finds its one graph."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = MLP(3).eval()
    x = torch.randn(4, 8)
    with torch._inductor.utils.fresh_cache(), torch.no_grad():
        expected = torch.compile(model, backend=fbc_backend(0.0), fullgraph=True)(x)
        # Cold: head, block 1 and tail are traced; block 2 is served by block 1's entry.
        assert (counters["aot_autograd"]["autograd_cache_miss"], counters["aot_autograd"]["autograd_cache_hit"]) == (
            3, 1)
        torch._dynamo.reset()
        counters.clear()
        out = torch.compile(model, backend=fbc_backend(0.0), fullgraph=True)(x)
    assert counters["aot_autograd"]["autograd_cache_hit"] == 4
    assert counters["aot_autograd"]["autograd_cache_miss"] == 0
    assert counters["aot_autograd"]["autograd_cache_bypass"] == 0
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("spec, pieces, compiled", [
    # Blocks 1-3 alike (the last one too: the tail computes the tail residuals).
    (zoo.seed.wan(layers=4), 5, 3),
    # Double blocks 1 and 2 alike (the last one hands its states on in another order, which the split undoes);
    # single block 0 reads contiguous states, block 1 views of its concatenation; the last block hands on only the
    # image states (the text states it would hand on are dead code).
    (zoo.seed.flux(layers=3, single_layers=3), 7, 6),
], ids=["wan", "flux"])
def test_identical_blocks_are_compiled_once(spec, pieces, compiled, fresh_dynamo):
    """The body is compiled block by block, and alike blocks are the same graph, so that a repeated block is traced
    and lowered once: AOTAutograd's cache serves the others, in the same process, from a cold start."""
    from torch._dynamo.utils import counters

    model = spec.build()
    inputs = inputs_of(spec)
    with torch._inductor.utils.fresh_cache(), torch.no_grad():
        out = torch.compile(model, backend=fbc_backend(0.0), fullgraph=True)(**inputs)[0]
        expected = model(**inputs)[0]
    assert compilation_counter["pieces"] == pieces  # head, one per later block, tail
    aot = counters["aot_autograd"]
    assert (aot["autograd_cache_miss"], aot["autograd_cache_hit"], aot["autograd_cache_bypass"]) == (
        compiled, pieces - compiled, 0)
    assert counters["inductor"]["fxgraph_cache_miss"] == compiled
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_inductor_pieces_train_like_eager(fresh_dynamo):
    """With grad enabled each piece's backward is compiled by inductor at the first backward call, from that
    piece's own forward metadata: the gradients are eager's."""
    torch.manual_seed(0)
    model = MLP(3)
    x = torch.randn(4, 8)
    compiled = torch.compile(model, backend=fbc_backend(10.0), fullgraph=True)
    for _ in range(2):  # the first backward compiles, the second reuses
        model.zero_grad()
        compiled(x).square().sum().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    torch.testing.assert_close(compiled_grads, [p.grad for p in model.parameters()])
    assert compilation_counter["pieces"] == 4


def test_grad_mode_never_skips(wan, fresh_dynamo):
    spec, model = wan
    backend = fbc_backend(10.0, compiler="eager")  # a threshold every diff meets
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    inputs = inputs_of(spec)
    with torch.enable_grad():  # the same values as new tensors: consecutive steps, each would skip without grad
        outs = [compiled(**dict(inputs, hidden_states=inputs["hidden_states"].clone()))[0] for _ in range(3)]
    assert backend.stats["branch0"].decisions == [True, True, True]
    with torch.no_grad():
        expected = model(**inputs)[0]
    for out in outs:
        torch.testing.assert_close(out, expected)
    outs[0].sum().backward()  # the split graph is differentiable
    assert model.proj_out.weight.grad is not None


def test_implicit_contexts_follow_the_conditioning_tensors(wan, fresh_dynamo):
    """Without cache contexts, a call's context is named by the tensors it is conditioned on (all inputs but the
    latents and the timestep), whatever the latents are: a new tensor per call, one modified in place or through
    ``.data``, the very same one again, under ``inference_mode``."""
    spec, model = wan
    backend = fbc_backend(10.0, compiler="eager")
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    cond = inputs_of(spec)
    uncond = dict(cond, encoder_hidden_states=torch.zeros_like(cond["encoder_hidden_states"]))
    latents = cond["hidden_states"]
    with torch.no_grad():
        compiled(**cond), compiled(**uncond)  # branch0, branch1
        compiled(**dict(cond, hidden_states=latents.clone()))  # a new latent tensor: still cond's context
        compiled(**dict(uncond, hidden_states=latents.clone()))
        latents.data = latents.data * 0.99  # no version bump
        compiled(**cond), compiled(**cond)  # the very same tensor twice: cond's context, twice
    with torch.inference_mode():  # a graph of its own (dynamo guards the mode): its first call computes
        for _ in range(2):
            compiled(**dict(uncond, hidden_states=torch.randn_like(latents)))  # no version counters at all
    assert backend.stats["branch0"].decisions == [True, False, False, False]
    assert backend.stats["branch1"].decisions == [True, False, True, False]


def test_cache_context_names_the_state_and_the_pipeline_reset_is_honoured(wan, fresh_dynamo):
    spec, model = wan
    backend = fbc_backend(10.0, compiler="eager")
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    inputs = inputs_of(spec)
    with torch.no_grad():
        for step in range(2):  # a pipeline's loop: new latents each step, shared by cond and uncond
            latents = inputs["hidden_states"].clone()
            for name in ("cond", "uncond"):
                with compiled.cache_context(name):  # reaches the original module, as in pipelines
                    compiled(**dict(inputs, hidden_states=latents))
        stored = weakref.ref(backend._states.tensors()[0])
        assert backend.stats["cond"].decisions == [True, False] and backend.stats["uncond"].decisions == [True, False]
        compiled._reset_stateful_cache()  # what a pipeline calls at the end of __call__
        gc.collect()
        assert stored() is None, "the pipeline reset must free the cached tensors"
        with compiled.cache_context("cond"):
            compiled(**inputs)
    # A new generation: its own decisions, and its first call compares with nothing.
    assert backend.stats["cond"].decisions == [True] and backend.stats["cond"].diffs == [None]
    assert backend.stats["uncond"].decisions == [] and backend.stats["cond"].calls == 3
    assert compilation_counter["graphs"] == 1


def test_reset_frees_state_and_threshold_changes_do_not_recompile(wan, fresh_dynamo):
    spec, model = wan
    backend = fbc_backend(10.0, compiler="eager")
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    inputs = inputs_of(spec)
    with torch._dynamo.config.patch(error_on_recompile=True), torch.no_grad():
        compiled(**inputs), compiled(**dict(inputs, hidden_states=inputs["hidden_states"].clone()))
        stored = weakref.ref(backend._states.tensors()[-1])  # a tail residual
        backend.reset()
        gc.collect()
        assert stored() is None and backend.stats == {}
        backend.threshold = 0.0
        compiled(**inputs), compiled(**dict(inputs, hidden_states=inputs["hidden_states"] + 1))
    assert backend.stats["branch0"].decisions == [True, True]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert compilation_counter["pieces"] == len(EXPECTED_BLOCKS["wan"]) + 1


def test_split_and_decisions_are_logged(wan, fresh_dynamo, caplog):
    spec, model = wan
    compiled = torch.compile(model, backend=fbc_backend(10.0, compiler="eager"), fullgraph=True)
    with caplog.at_level(logging.DEBUG, logger="fbc_compile"), torch.no_grad():
        inputs = inputs_of(spec)
        compiled(**inputs), compiled(**inputs)
    info = [r.getMessage() for r in caplog.records if r.name == "fbc_compile" and r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.name == "fbc_compile" and r.levelno == logging.DEBUG]
    assert any("3 blocks (blocks.0 ... blocks.2)" in m and "head" in m and "body" in m for m in info), info
    assert [m.split(":")[1].split()[0] for m in debug] == ["compute", "skip"], debug
