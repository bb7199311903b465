"""One compiled model, called from several threads, as a server calls it: each thread's calls decide and output
exactly as the same loop run alone does.

Each case runs its loops alone first (the reference), then in free-running threads released together, over
several rounds; a thread's decisions and outputs must be the reference's bit for bit. The pieces run eagerly
(the backend's per-call state is the point, not the compiler).
"""

from __future__ import annotations

import threading

import pytest
import torch

import zoo
from fbc_compile import fbc_backend
from helpers import context_of

SPEC = zoo.SEED["wan"]
THRESHOLD = 0.085
STEPS = 8
ROUNDS = 3


def _loop(model, inputs: dict, context: str | None) -> tuple[list, torch.Tensor]:
    """A single-branch denoising loop in ``context`` (None: no cache context), one call per step."""
    latents, outputs = inputs["hidden_states"].clone(), []
    ts = torch.linspace(1.0, 0.0, STEPS + 1)
    with torch.no_grad():
        for i in range(STEPS):
            with context_of(model, context):
                out = model(**dict(inputs, hidden_states=latents, timestep=SPEC.make_timestep(float(ts[i]), 1)))[0]
            outputs.append(out.clone())
            latents = latents + (ts[i + 1] - ts[i]).item() * out
    return outputs, latents


def _in_threads(jobs: list) -> list:
    """Run every job in its own thread, all released at once; their results, in order."""
    results, start = [None] * len(jobs), threading.Barrier(len(jobs))

    def run(i, job):
        start.wait()
        results[i] = job()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return results


def _decisions(backend, context: str) -> list:
    return list(backend.stats[context].decisions)


def test_threads_in_their_own_cache_contexts_on_one_model(fresh_dynamo):
    """diffusers' ``cache_context`` names the context per thread, so the two threads never share a state."""
    backend = fbc_backend(THRESHOLD, compiler="eager")
    compiled = torch.compile(SPEC.build(), backend=backend)
    inputs = {name: SPEC.inputs(seed=seed) for name, seed in (("first", 1), ("second", 2))}
    alone = {}
    for name in inputs:
        backend.reset()
        outputs, latents = _loop(compiled, inputs[name], name)
        alone[name] = (_decisions(backend, name), outputs, latents)
        assert not all(alone[name][0]), "nothing skipped: the test would not cover the skip path"
    for _ in range(ROUNDS):
        backend.reset()
        together = _in_threads([lambda name=name: _loop(compiled, inputs[name], name) for name in inputs])
        for name, (outputs, latents) in zip(inputs, together):
            assert _decisions(backend, name) == alone[name][0], name
            for out, ref in zip(outputs, alone[name][1]):
                assert torch.equal(out, ref), name
            assert torch.equal(latents, alone[name][2]), name


def test_threads_on_two_instances_sharing_one_graph(fresh_dynamo):
    """Two instances of one class (one dynamo graph), one per thread, no cache contexts: each keeps its state."""
    backend = fbc_backend(THRESHOLD, compiler="eager")
    models = [torch.compile(SPEC.build(seed=seed), backend=backend) for seed in (0, 1)]
    inputs = [SPEC.inputs(seed=seed) for seed in (1, 2)]
    alone = [_loop(model, batch, None) for model, batch in zip(models, inputs)]
    for _ in range(ROUNDS):
        together = _in_threads([lambda i=i: _loop(models[i], inputs[i], None) for i in range(2)])
        for (outputs, latents), (expected, expected_latents) in zip(together, alone):
            assert all(torch.equal(out, ref) for out, ref in zip(outputs, expected))
            assert torch.equal(latents, expected_latents)
    assert backend.stats["branch0"].skips > 0


@pytest.mark.parametrize("threads", [4])
def test_statistics_count_every_call_of_every_thread(threads, fresh_dynamo):
    backend = fbc_backend(THRESHOLD, compiler="eager")
    compiled = torch.compile(SPEC.build(), backend=backend)
    inputs = SPEC.inputs()
    _loop(compiled, inputs, "warm-up")
    _in_threads([lambda i=i: _loop(compiled, inputs, f"thread{i}") for i in range(threads)])
    assert [backend.stats[f"thread{i}"].calls for i in range(threads)] == [STEPS] * threads
