"""End to end: real diffusers pipelines with the transformer compiled by ``fbc_backend``.

Each of the five pipelines (Flux, Wan, HunyuanVideo, LTX-Video, CogView4) is built from tiny random-weight
components by ``fbc_compile.pipelines`` and called with prompt embeddings, classifier-free guidance on (Flux and
HunyuanVideo: true CFG with negative embeddings, "cond"/"uncond"; Wan, CogView4: "cond"/"uncond"; LTX: one batched
"cond_uncond" call per step). The references, all independent of our code:

* diffusers' own First Block Cache (``transformer.enable_cache``) on an eager copy of the pipeline: the decisions
  it takes (recorded by ``fbc_compile/reference.py``) and its output;
* the uncached eager pipeline, and the same pipeline under a plain ``torch.compile``: their difference is the
  compiler's numerical noise on this model, the yardstick for every "outputs match" below.

One module-scoped fixture per pipeline runs everything once (two inductor compiles per pipeline); the tests
read its results.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fbc_compile
from fbc_compile import fbc_backend
from pipelines import PIPELINES, build_pipeline, call_kwargs

from reference import record_hook_decisions

pytestmark = pytest.mark.slow

STEPS = 10
# How far a cached generation may drift from diffusers' cached generation, in units of the compiler noise that a
# plain torch.compile shows on the same (uncached) pipeline: the pieces are compiled apart, so they round
# differently from one whole graph, and a skip replays a residual that carries that rounding. Measured on these
# five pipelines: fbc vs hook is 0.9-1.5x the plain-compile noise (2e-7 to 1.5e-6 relative); skipping itself moves
# the output by 6e-3 to 2e-2.
NOISE_MULTIPLE = 5
NOISE_FLOOR = 1e-6  # relative; below this, float32 rounding of the outputs themselves


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


@dataclasses.dataclass
class Generation:
    decisions: dict[str, list[bool]]
    diffs: dict[str, list]
    output: torch.Tensor


@dataclasses.dataclass
class Results:
    name: str
    threshold: float
    eager: torch.Tensor  # uncached, eager
    plain: torch.Tensor  # uncached, plain torch.compile (inductor)
    hook: list[Generation]  # diffusers' FBC, eager, two consecutive generations
    fbc: list[Generation]  # fbc_backend (inductor), two consecutive generations at the threshold
    fbc_zero: Generation  # then a third at threshold 0
    compiles_after_first: int  # dynamo compilations between the end of fbc's first generation and the end
    graphs: int  # graphs fbc_backend compiled

    @property
    def noise(self) -> float:
        return max(relative_error(self.plain, self.eager), NOISE_FLOOR)


def _generate(pipe, name: str) -> torch.Tensor:
    (output,) = pipe(**call_kwargs(name, steps=STEPS))
    return output


def _fbc_generation(pipe, backend, name: str) -> Generation:
    """One generation, and its decisions: the statistics hold the current generation's, which the pipeline's
    end-of-call reset ends."""
    output = _generate(pipe, name)
    return Generation({ctx: list(s.decisions) for ctx, s in backend.stats.items() if s.decisions},
                      {ctx: list(s.diffs) for ctx, s in backend.stats.items() if s.diffs}, output)


@pytest.fixture(scope="module", params=list(PIPELINES))
def results(request) -> Results:
    from torch._dynamo.utils import get_compilation_metrics

    name = request.param
    threshold = PIPELINES[name].threshold
    # Every diffusers transformer's forward is the same function (diffusers' peft_utils wrapper around the
    # model's own), so all of them share dynamo's 8-entry recompile limit: start each pipeline from an empty cache.
    # (pytest finishes all tests of one param before building the next, so this drops nothing still in use.)
    torch._dynamo.reset()

    reference = build_pipeline(name)
    eager = _generate(reference, name)
    reference.transformer = torch.compile(reference.transformer)
    plain = _generate(reference, name)

    hooked = build_pipeline(name)  # same seed: same weights
    record = record_hook_decisions(hooked.transformer, threshold)
    hook = []
    for _ in range(2):
        output = _generate(hooked, name)
        hook.append(Generation({k: list(v) for k, v in record.decisions.items()},
                               {k: list(v) for k, v in record.diffs.items()}, output))
        record.clear()

    pipe = build_pipeline(name)
    graphs = fbc_compile.compilation_counter["graphs"]
    backend = fbc_backend(threshold)
    pipe.transformer = torch.compile(pipe.transformer, backend=backend)
    fbc = [_fbc_generation(pipe, backend, name)]
    compiles = len(get_compilation_metrics())
    fbc.append(_fbc_generation(pipe, backend, name))
    backend.threshold = 0.0
    fbc_zero = _fbc_generation(pipe, backend, name)
    return Results(name, threshold, eager, plain, hook, fbc, fbc_zero, len(get_compilation_metrics()) - compiles,
                   fbc_compile.compilation_counter["graphs"] - graphs)


def _describe(generation: Generation) -> str:
    return "; ".join(
        f"{ctx}: " + " ".join(("C" if c else "S") + ("" if d is None else f"{d:.4f}")
                              for c, d in zip(generation.decisions[ctx], generation.diffs[ctx]))
        for ctx in generation.decisions)


def test_decisions_match_diffusers_hook(results: Results):
    """Every denoiser call of the first generation decides as diffusers' hook does, in every cache context."""
    hook, ours = results.hook[0], results.fbc[0]
    assert ours.decisions == hook.decisions, f"\n ours: {_describe(ours)}\n hook: {_describe(hook)}"
    decisions = [d for ctx in hook.decisions.values() for d in ctx]
    assert len(decisions) == STEPS * len(hook.decisions)
    assert any(decisions) and not all(decisions), "the threshold must give both computed and skipped calls"
    # the graph was split (the cache is really active) and compiled once for the whole generation
    assert results.graphs == 1


def test_outputs_match_diffusers_hook(results: Results):
    """The cached generation equals diffusers' cached generation within a small multiple of the compiler noise,
    while caching itself moved the output far beyond that (so the comparison can tell skips apart)."""
    hook, ours = results.hook[0], results.fbc[0]
    tolerance = NOISE_MULTIPLE * results.noise
    error = relative_error(ours.output, hook.output)
    assert error <= tolerance, f"fbc vs diffusers hook: {error:.2e} > {tolerance:.2e} (noise {results.noise:.2e})"
    caching_effect = relative_error(hook.output, results.eager)
    assert caching_effect > 10 * tolerance, f"skipping changed the output by only {caching_effect:.2e}"


def test_consecutive_generations_identical(results: Results):
    """The pipeline's end-of-call reset clears the cache: the second generation repeats the first exactly.

    diffusers 0.42.1 behaves the same way (``StateManager.reset`` drops each context's state, the stored
    ``head_block_residual`` with it), so the hook's second generation also starts with a computed step: both
    generations of each side are compared with the same reference.
    """
    first, second = results.fbc
    assert second.decisions == first.decisions
    assert torch.equal(second.output, first.output)
    assert results.hook[1].decisions == results.hook[0].decisions
    assert torch.equal(results.hook[1].output, results.hook[0].output)
    for ctx, diffs in second.diffs.items():
        assert diffs[0] is None, f"{ctx}: the second generation's first call compared with a stale residual"


def test_threshold_zero_equals_uncached(results: Results):
    """At threshold 0 every call computes and the output is the uncached pipeline's, within the compiler noise."""
    zero = results.fbc_zero
    assert all(all(d) for d in zero.decisions.values()), _describe(zero)
    tolerance = NOISE_MULTIPLE * results.noise
    assert relative_error(zero.output, results.eager) <= tolerance
    assert relative_error(zero.output, results.plain) <= tolerance


def test_no_recompilation_across_generations(results: Results):
    """Decisions that change from call to call, a second generation and a new threshold compile nothing."""
    assert results.compiles_after_first == 0

