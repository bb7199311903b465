"""Context parallelism: every rank takes the same decision, the one the single-process model takes.

Two processes on gloo run diffusers' context parallelism (``tests/parallel.py`` says what it works around on a
CPU). For each model and mode, every rank:

1. runs diffusers' own hook on its shard at threshold 0 and records the difference it measures: the number a
   rank deciding alone would compare with the threshold. The ranks' numbers differ;
2. picks a threshold between the two ranks' numbers at the first call that can skip, away from the number the
   whole (unsharded) residual gives: deciding alone, one rank would skip while the other computes, and the job
   would hang in the blocks' collectives;
3. runs the same generation with ``fbc_backend`` at that threshold, and the single-process reference
   (``reference.IdentityBodyReference``, no parallelism) at it.

Every rank must take the reference's decisions, reach its final latents, compile one graph, split it, and
follow the pipeline's cache contexts (which the backend finds through diffusers' hooks on the model). Then one
rank alone forgets its state: every rank must compute the next call.
"""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
import torch.distributed as dist

import zoo
from fbc_compile import compilation_counter, fbc_backend
from helpers import context_of, denoise, relative_error
from parallel import enable_context_parallelism, launch
from reference import IdentityBodyReference, execution_order, hook_context, record_hook_decisions

pytestmark = pytest.mark.slow

STEPS = 6
SCENARIOS = [("flux", "ulysses"), ("wan", "ulysses"), ("qwenimage", "ulysses"), ("flux", "ring")]
TOLERANCE = 1e-4  # sharded attention adds in another order than one process does


def _loop(spec, model, call_in_context):
    def call(branch, kwargs):
        with call_in_context(model, branch):
            return model(**kwargs)

    return denoise(spec, call, STEPS)[0]


def _scenario(rank: int, name: str, mode: str) -> dict:
    spec = zoo.CATALOGUE[name]
    torch._dynamo.reset()
    compilation_counter.clear()
    blocks = execution_order(spec.build(), spec.sequence, **spec.inputs())

    hooked = spec.build()
    local = record_hook_decisions(hooked, 0.0)  # diffusers' hook goes on before the parallelism's hooks
    enable_context_parallelism(hooked, mode)
    _loop(spec, hooked, hook_context)
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, local.diffs["cond"][1])
    whole = IdentityBodyReference(spec.build(), blocks, spec.carries, 0.0, spec.hidden)
    denoise(spec, lambda branch, kwargs: whole(branch, **kwargs), STEPS)
    low, high, middle = min(ranks), max(ranks), whole.diffs["cond"][1]
    threshold = (low + middle) / 2 if middle - low > high - middle else (middle + high) / 2

    reference = IdentityBodyReference(spec.build(), blocks, spec.carries, threshold, spec.hidden)
    expected = denoise(spec, lambda branch, kwargs: reference(branch, **kwargs), STEPS)[0]

    model = spec.build()
    enable_context_parallelism(model, mode)
    if name == "wan":
        # Wan calls its blocks positionally, and the split hook on its block 0 looks the argument up with
        # inspect.signature on its first call, which dynamo cannot trace; the result is cached after one call.
        with torch.no_grad():
            model(**spec.inputs())
    backend = fbc_backend(threshold, compiler="eager")
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latents = _loop(spec, compiled, context_of)
    decisions = {context: list(stats.decisions) for context, stats in backend.stats.items()}
    # One rank forgets its state (as after an exception on that rank alone): its vote makes every rank compute.
    if rank == 0:
        compiled._reset_stateful_cache()
    backend.threshold = 1e9
    with context_of(compiled, "cond"), torch.no_grad():
        compiled(**dict(spec.inputs(), **{spec.timestep: spec.make_timestep(0.5, 1)}))
    return dict(
        after_one_rank_reset=backend.stats["cond"].decisions[-1],
        warnings=[str(w.message) for w in caught if "fbc_compile" in str(w.message)],
        ranks=ranks, whole=middle, threshold=threshold, counter=dict(compilation_counter),
        decisions=decisions,
        reference=reference.decisions, error=relative_error(latents, expected),
    )


def _worker(rank: int, path: str) -> None:
    # The root hook of Wan's parallel plan calls `logger.warning_once` (which transformers adds to logging.Logger)
    # on every call, which dynamo cannot trace; dynamo is told to drop it.
    import transformers.utils.logging  # noqa: F401  (adds it)

    torch._dynamo.config.ignore_logging_functions.add(logging.Logger.warning_once)
    results = {f"{name} {mode}": _scenario(rank, name, mode) for name, mode in SCENARIOS}
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    if rank == 0:
        with open(path, "w") as f:
            json.dump(gathered, f)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("needs the gloo backend")
    import diffusers  # noqa: F401  (before spawning: each process then imports from a warm cache)

    path = tmp_path_factory.mktemp("context_parallel") / "ranks.json"
    codes = launch(_worker, str(path))
    assert codes == [0, 0], f"exit codes {codes} (None: still running at the deadline, a hang)"
    return json.loads(path.read_text())


@pytest.mark.parametrize("scenario", [f"{name} {mode}" for name, mode in SCENARIOS])
def test_every_rank_decides_as_the_single_process_model(ranks, scenario):
    results = [rank[scenario] for rank in ranks]
    local = results[0]["ranks"]
    assert min(local) < results[0]["threshold"] < max(local), "the ranks alone would agree: no test of agreement"
    for result in results:
        assert not result["warnings"], result["warnings"]
        assert result["decisions"] == result["reference"], result
        assert not all(d for ds in result["decisions"].values() for d in ds), "nothing skipped"
        assert result["error"] <= TOLERANCE, result["error"]
        assert result["counter"] == {"graphs": 1, "split_graphs": 1, "pieces": result["counter"]["pieces"]}


def test_the_ranks_measure_different_differences_alone(ranks):
    """What diffusers' own hook compares with the threshold, per rank: the ranks' numbers differ, so a hook that
    decides per rank can skip on one rank and compute on another (which hangs the job)."""
    for scenario in ranks[0]:
        local = ranks[0][scenario]["ranks"]
        assert local[0] != local[1], scenario


def test_a_rank_that_lost_its_state_makes_every_rank_compute(ranks):
    """After one rank's state was reset alone, at a threshold that would skip anything comparable, that rank has
    nothing to compare with: its vote makes every rank compute the call, where deciding alone would hang."""
    for scenario in ranks[0]:
        assert [rank[scenario]["after_one_rank_reset"] for rank in ranks] == [True, True], scenario
