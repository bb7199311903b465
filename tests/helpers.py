"""What several test modules share: the denoising loop, contexts, errors."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from zoo.spec import ModelSpec

__all__ = ["HOOK_COUNTS", "context_of", "denoise", "generate", "pieces", "relative_error"]


def context_of(model, name: str | None):
    """``model.cache_context(name)`` where the model has diffusers' cache contexts (and a name is given)."""
    if name is None or not hasattr(model, "cache_context"):
        return contextlib.nullcontext()
    return model.cache_context(name)


def denoise(spec: ModelSpec, call: Callable[[str, dict], Any], steps: int = 10, *, batch: int = 1, seed: int = 0,
            cfg: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A flow-matching Euler loop, ``x <- x + (t_next - t) * v`` with t falling from 1 to 0, as a pipeline runs it.

    ``call(branch, kwargs)`` runs one denoiser call (``branch`` is "cond" or "uncond"). With ``cfg`` and a model
    that has a condition to drop, each step calls cond then uncond on the same latents and guides with
    ``v_uncond + 2 (v_cond - v_uncond)``. The latents are copied into one buffer each step so that their layout
    never changes (dynamo guards on strides). Returns the final latents and every call's prediction.
    """
    inputs = spec.inputs(batch, seed)
    branches = [("cond", {})]
    if cfg and spec.uncond is not None:
        branches.append(("uncond", spec.uncond(inputs)))
    latents = inputs[spec.latent].clone()
    buffer = torch.empty_like(latents)
    ts = torch.linspace(1.0, 0.0, steps + 1)
    outputs = []
    with torch.no_grad():
        for i in range(steps):
            buffer.copy_(latents)
            step = {spec.latent: buffer, spec.timestep: spec.make_timestep(float(ts[i]), batch)}
            velocities = [spec.velocity(call(name, dict(inputs, **overrides, **step))).clone()
                          for name, overrides in branches]
            outputs += velocities
            v = velocities[0] if len(velocities) == 1 else velocities[1] + 2.0 * (velocities[0] - velocities[1])
            latents = latents + (ts[i + 1] - ts[i]).item() * v
    return latents, outputs


def generate(model, spec: ModelSpec, steps: int, *, cfg: bool = False, context: bool = False,
             after_call: Callable[[str], None] | None = None, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``denoise`` calling ``model``: each call in its ``cache_context`` ("cond", "uncond") with ``context``, and
    ``after_call(branch)`` run inside it after the call (to read a hook's state)."""

    def call(branch: str, inputs: dict):
        with context_of(model, branch if context else None):
            output = model(**inputs)
            if after_call is not None:
                after_call(branch)
        return output

    return denoise(spec, call, steps, cfg=cfg, **kwargs)


# diffusers 0.42.1's First Block Cache hook + torch.compile (fullgraph=False), torch 2.13.0, over a 12-step CFG
# generation of each seed model (test_counts.py measures it; the bench's compile suite counts the same).
HOOK_COUNTS = {
    "flux": dict(graphs=17, pieces=17, frames=27, recompiles=12, graph_breaks=5, frames_given_up=2),
    "wan": dict(graphs=12, pieces=12, frames=24, recompiles=8, graph_breaks=7, frames_given_up=2),
    "hunyuan_video": dict(graphs=22, pieces=22, frames=33, recompiles=15, graph_breaks=5, frames_given_up=2),
    "ltx_video": dict(graphs=14, pieces=14, frames=22, recompiles=9, graph_breaks=5, frames_given_up=2),
    "cogview4": dict(graphs=15, pieces=15, frames=27, recompiles=10, graph_breaks=7, frames_given_up=2),
}


def pieces(spec: ModelSpec) -> int:
    """How many pieces fbc compiles a graph of ``spec``'s model into: the head, one per block after the first,
    and the tail."""
    model = spec.build()
    return sum(len(model.get_submodule(name)) for name in spec.sequence) + 1


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().clamp_min(1e-12)
    return float((actual.double() - expected.double()).abs().max() / scale)
