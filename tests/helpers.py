"""What several test modules share: the denoising loop, contexts, errors."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from zoo.spec import ModelSpec

__all__ = ["denoise", "context_of", "relative_error"]


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
    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    outputs = []
    with torch.no_grad():
        for t, t_next in zip(ts, ts[1:]):
            buffer.copy_(latents)
            step = {spec.latent: buffer, spec.timestep: spec.make_timestep(t, batch)}
            velocities = [spec.velocity(call(name, dict(inputs, **overrides, **step))).clone()
                          for name, overrides in branches]
            outputs += velocities
            v = velocities[0] if len(velocities) == 1 else velocities[1] + 2.0 * (velocities[0] - velocities[1])
            latents = latents + (t_next - t) * v
    return latents, outputs


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().clamp_min(1e-12)
    return float((actual.double() - expected.double()).abs().max() / scale)
