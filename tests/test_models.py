"""Every diffusers DiT of the catalogue, compiled with ``fbc_backend`` (eager pieces: the pass's logic is the point).

Per model, one module-scoped run drives a 10-step CFG generation (cond and uncond calls in their cache contexts)
through one compiled model, at threshold 0 and at a threshold that skips, and checks it against references
that do not use the pass:

* the blocks the pass locates are the model's main block sequence, as the model runs it eagerly;
* one dynamo graph, no recompilation, no fallback, no warning;
* threshold 0 equals the eager model;
* at a threshold that skips, decisions and outputs equal ``reference.IdentityBodyReference`` (First Block Cache
  as the rule states it, with forward hooks on an eager copy); the threshold is chosen on that reference so that
  no measured difference lies near it;
* where diffusers' own hook handles the model, its decisions and outputs too.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import zoo
from fbc_compile import compilation_counter, fbc_backend
from fbc_compile.passes.locate import locate_blocks
from helpers import context_of, denoise, relative_error
from reference import IdentityBodyReference, execution_order, hook_context, record_hook_decisions
from zoo.table import ROOT, readme_table, variants_table

STEPS = 10
MARGIN = 1e-3  # relative distance every measured difference keeps from the chosen threshold
TOLERANCE = 1e-5  # eager pieces do the model's arithmetic: only the order of a few additions differs

SUPPORTED = {name: spec for name, spec in zoo.CATALOGUE.items() if not spec.unsupported}
UNSUPPORTED = {name: spec for name, spec in zoo.CATALOGUE.items() if spec.unsupported}


@dataclasses.dataclass
class Outcome:
    spec: zoo.ModelSpec
    located: list[str]
    expected: list[str]
    counts: dict
    warnings: list[str]
    zero_error: float
    zero_skips: int
    threshold: float
    decisions: dict
    reference_decisions: dict
    reference_error: float
    latents: torch.Tensor


def _cfg(spec) -> bool:
    """Whether the generation calls cond and uncond separately. The backend tells the two apart by the model's
    cache contexts, or else by the very latent tensor a call receives; a graph that dynamo cut out of the middle
    of the model (``fullgraph=False``) receives new tensors every call. Such models without cache contexts are
    run as their pipelines run them: both branches in one batched call."""
    return spec.fullgraph or hasattr(spec.build(), "cache_context")


def _run_reference(spec, blocks, threshold):
    reference = IdentityBodyReference(spec.build(), blocks, spec.carries, threshold, spec.hidden)
    latents, _ = denoise(spec, lambda name, kwargs: reference(name, **kwargs), STEPS, cfg=_cfg(spec))
    return reference, latents


def _pick_threshold(spec, blocks):
    """A threshold at which the reference both skips and computes, with every difference it measures at least
    ``MARGIN`` away (so that float noise cannot flip a decision), and the reference's run at it."""
    zero, _ = _run_reference(spec, blocks, 0.0)
    diffs = sorted({d for ds in zero.diffs.values() for d in ds if d is not None})
    middles = [(a + b) / 2 for a, b in zip(diffs, diffs[1:])]
    middles.sort(key=lambda t: abs(t - diffs[len(diffs) // 2]))
    for threshold in middles:
        reference, latents = _run_reference(spec, blocks, threshold)
        measured = [d for ds in reference.diffs.values() for d in ds if d is not None]
        skips = sum(not d for ds in reference.decisions.values() for d in ds)
        if skips and all(abs(d - threshold) > MARGIN * threshold for d in measured):
            return threshold, reference, latents
    raise AssertionError(f"no threshold skips with a margin on {spec.name}: diffs {diffs}")


def _register_hook_metadata(model, spec) -> None:
    """Tell diffusers' hook, for block classes it does not know, which outputs are the two streams."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    for module in model.modules():
        names = spec.carries.get(type(module).__name__)
        if names is None:
            continue
        try:
            TransformerBlockRegistry.get(type(module))
        except ValueError:
            hidden = spec.hidden if spec.hidden in names else names[0]
            text = "encoder_hidden_states" if "encoder_hidden_states" in names else None
            TransformerBlockRegistry.register(type(module), TransformerBlockMetadata(
                return_hidden_states_index=names.index(hidden),
                return_encoder_hidden_states_index=None if text is None else names.index(text),
                hidden_states_argument_name=hidden))


@pytest.fixture(scope="module", params=sorted(SUPPORTED))
def outcome(request) -> Outcome:
    spec = SUPPORTED[request.param]
    torch._dynamo.reset()
    compilation_counter.clear()
    eager = spec.build()
    expected = execution_order(eager, spec.sequence, **spec.inputs())
    plain, _ = denoise(spec, lambda name, kwargs: eager(**kwargs), STEPS, cfg=_cfg(spec))

    model = spec.build()
    located = []
    backend = fbc_backend(0.0, compiler="eager")
    split = backend._split

    def record_blocks(gm, example_inputs, module):
        params = {node for node, value in zip(gm.graph.find_nodes(op="placeholder"), example_inputs)
                  if isinstance(value, torch.nn.Parameter)}
        result = split(gm, example_inputs, module)
        located[:] = [block.name for block in locate_blocks(gm, params, module)]
        return result

    backend._split = record_blocks
    compiled = torch.compile(model, backend=backend, fullgraph=spec.fullgraph)

    def call(name, kwargs):
        with context_of(compiled, name):
            return compiled(**kwargs)

    threshold, reference, reference_latents = _pick_threshold(spec, expected)
    with warnings.catch_warnings(record=True) as caught, torch._dynamo.config.patch(
            error_on_recompile=True, **spec.dynamo_config):
        warnings.simplefilter("always")
        zero, _ = denoise(spec, call, STEPS, cfg=_cfg(spec))
        zero_skips = sum(stats.skips for stats in backend.stats.values())
        backend.reset()
        backend.threshold = threshold
        ours, _ = denoise(spec, call, STEPS, cfg=_cfg(spec))
    return Outcome(
        spec, located, expected, dict(compilation_counter), [str(w.message) for w in caught],
        relative_error(zero, plain), zero_skips, threshold,
        {name: stats.decisions for name, stats in backend.stats.items()},
        dict(reference.decisions), relative_error(ours, reference_latents), ours)


def _by_branch(decisions: dict) -> list:
    """Decisions per branch in call order: contexts are named "cond"/"uncond", or "branch0"/"branch1" where the
    model has no cache contexts and the backend tells the branches apart by the latents they receive."""
    return [decisions[name] for name in sorted(decisions)]


def test_locates_the_main_block_sequence(outcome):
    assert outcome.located == outcome.expected


def test_one_graph_no_recompile_no_fallback(outcome):
    """One graph, split; where dynamo breaks the model into several (``fullgraph=False``), the one that holds the
    blocks is split and the others, which hold no blocks, are compiled as they are, each with its warning."""
    counts, warned = outcome.counts, [w for w in outcome.warnings if "fbc_compile" in w]
    assert counts.get("split_graphs") == 1, counts
    if outcome.spec.fullgraph:
        assert counts.get("graphs") == 1 and counts.get("fallbacks", 0) == 0 and not warned, (counts, warned)
    else:
        assert counts.get("fallbacks", 0) == counts["graphs"] - 1 == len(warned), (counts, warned)


def test_threshold_zero_equals_eager(outcome):
    assert outcome.zero_skips == 0
    assert outcome.zero_error <= TOLERANCE


def test_skips_as_the_reference(outcome):
    assert _by_branch(outcome.decisions) == _by_branch(outcome.reference_decisions)
    assert not all(d for ds in outcome.decisions.values() for d in ds)
    assert outcome.reference_error <= TOLERANCE


def test_decides_like_diffusers_hook(outcome):
    spec = outcome.spec
    if not spec.hook:
        pytest.skip("diffusers' hook does not handle this model as the rule says (see the README's model table)")
    hooked = spec.build()
    _register_hook_metadata(hooked, spec)
    record = record_hook_decisions(hooked, outcome.threshold)

    def call(name, kwargs):
        with hook_context(hooked, name):
            return hooked(**kwargs)

    latents, _ = denoise(spec, call, STEPS, cfg=_cfg(spec))
    assert _by_branch(outcome.decisions) == _by_branch(record.decisions)
    assert relative_error(outcome.latents, latents) <= TOLERANCE


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_a_model_no_graph_of_which_holds_its_blocks_still_compiles_and_runs(name):
    """Where dynamo breaks every block apart, no graph is split: each compiles as it is, with a warning that says
    why, and the generation equals the eager model's."""
    spec = UNSUPPORTED[name]
    torch._dynamo.reset()
    compilation_counter.clear()
    eager = spec.build()
    expected, _ = denoise(spec, lambda branch, kwargs: eager(**kwargs), 3)
    compiled = torch.compile(spec.build(), backend=fbc_backend(1e6, compiler="eager"))

    def call(branch, kwargs):
        with context_of(compiled, branch):
            return compiled(**kwargs)

    with warnings.catch_warnings(record=True) as caught, torch._dynamo.config.patch(**spec.dynamo_config):
        warnings.simplefilter("always")
        latents, _ = denoise(spec, call, 3)
    assert compilation_counter["split_graphs"] == 0 and compilation_counter["fallbacks"] >= 1
    assert any("without First Block Cache" in str(w.message) for w in caught)
    assert relative_error(latents, expected) <= TOLERANCE


def test_the_model_tables_say_what_the_tests_check():
    """The README's and docs/models.md's tables are generated from the catalogue the tests run on."""
    for path, table in ((ROOT / "README.md", readme_table()), (ROOT / "docs" / "models.md", variants_table())):
        assert table in path.read_text(), f"{path.name} is out of date: run `cd tests && python -m zoo.table`"
