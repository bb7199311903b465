"""Real diffusers transformers at chosen sizes, with inputs shaped like a pipeline's.

Tests, benchmarks and the demo all need the same thing: a diffusers model class built from a config (random
weights, no download) and the keyword arguments one denoiser call receives. Keeping the five models' recipes in
one table means a test, a benchmark row and the demo cannot disagree about what "tiny Flux" is.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

__all__ = ["ModelSpec", "MODELS", "build", "denoise"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one diffusers transformer and feed it.

    ``make_inputs(batch, generator)`` returns the model's keyword arguments for one call. The latent input is
    always ``hidden_states`` and the timestep ``timestep``; ``timestep_scale`` maps a step's t in [0, 1] to the
    value the model expects (Flux takes t in [0, 1], the others take t * 1000).
    """

    name: str
    model_cls: str
    config: dict
    make_inputs: Callable[[int, torch.Generator], dict]
    timestep_scale: float = 1000.0

    def build(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0):
        import diffusers

        torch.manual_seed(seed)
        model = getattr(diffusers, self.model_cls)(**self.config).to(device).eval()
        return model if dtype == torch.float32 else model.to(dtype)


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def flux(hidden: int = 32, layers: int = 2, single_layers: int = 2, tokens: int = 64, text: int = 24) -> ModelSpec:
    heads = max(1, hidden // 16)
    head_dim = hidden // heads
    rope = (head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8)
    config = dict(
        patch_size=1, in_channels=16, num_layers=layers, num_single_layers=single_layers,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=32,
        pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=rope,
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=_randn(gen, batch, tokens, 16),
            encoder_hidden_states=_randn(gen, batch, text, 32),
            pooled_projections=_randn(gen, batch, 16),
            timestep=torch.ones(batch),
            img_ids=torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(8.0), torch.arange(tokens // 8.0),
                                               indexing="ij"), -1).reshape(-1, 3)[:tokens],
            txt_ids=torch.zeros(text, 3),
            guidance=torch.full((batch,), 3.5),
            return_dict=False,
        )

    return ModelSpec("flux", "FluxTransformer2DModel", config, make_inputs, timestep_scale=1.0)


def wan(hidden: int = 32, layers: int = 3, frames: int = 2, size: int = 8, text: int = 12) -> ModelSpec:
    heads = max(1, hidden // 16)
    config = dict(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hidden // heads, in_channels=4,
        out_channels=4, text_dim=16, freq_dim=32, ffn_dim=2 * hidden, num_layers=layers, rope_max_seq_len=32,
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=_randn(gen, batch, 4, frames, size, size),
            timestep=torch.full((batch,), 1000.0),
            encoder_hidden_states=_randn(gen, batch, text, 16),
            return_dict=False,
        )

    return ModelSpec("wan", "WanTransformer3DModel", config, make_inputs)


def hunyuan_video(hidden: int = 32, layers: int = 2, single_layers: int = 2, frames: int = 2, size: int = 8,
                  text: int = 10) -> ModelSpec:
    heads = max(1, hidden // 16)
    head_dim = hidden // heads
    config = dict(
        in_channels=4, out_channels=4, num_attention_heads=heads, attention_head_dim=head_dim,
        num_layers=layers, num_single_layers=single_layers, num_refiner_layers=1, patch_size=2, patch_size_t=1,
        guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8,
        rope_axes_dim=(head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8),
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=_randn(gen, batch, 4, frames, size, size),
            timestep=torch.full((batch,), 1000.0),
            encoder_hidden_states=_randn(gen, batch, text, 16),
            encoder_attention_mask=torch.ones(batch, text),
            pooled_projections=_randn(gen, batch, 8),
            guidance=torch.full((batch,), 6000.0),
            return_dict=False,
        )

    return ModelSpec("hunyuan_video", "HunyuanVideoTransformer3DModel", config, make_inputs)


def ltx_video(hidden: int = 32, layers: int = 3, frames: int = 2, size: int = 4, text: int = 12) -> ModelSpec:
    heads = max(1, hidden // 16)
    config = dict(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=heads,
        attention_head_dim=hidden // heads, cross_attention_dim=hidden, num_layers=layers, caption_channels=16,
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=_randn(gen, batch, frames * size * size, 8),
            encoder_hidden_states=_randn(gen, batch, text, 16),
            timestep=torch.full((batch,), 1000.0),
            encoder_attention_mask=torch.ones(batch, text),
            num_frames=frames, height=size, width=size,
            return_dict=False,
        )

    return ModelSpec("ltx_video", "LTXVideoTransformer3DModel", config, make_inputs)


def cogview4(hidden: int = 32, layers: int = 3, size: int = 8, text: int = 12) -> ModelSpec:
    heads = max(1, hidden // 16)
    head_dim = hidden // heads
    config = dict(
        patch_size=2, in_channels=4, out_channels=4, num_layers=layers, attention_head_dim=head_dim,
        num_attention_heads=heads, text_embed_dim=16, time_embed_dim=8, condition_dim=4,
        rope_axes_dim=(head_dim // 2, head_dim // 2),
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=_randn(gen, batch, 4, size, size),
            encoder_hidden_states=_randn(gen, batch, text, 16),
            timestep=torch.full((batch,), 1000.0),
            original_size=torch.tensor([[size * 8, size * 8]] * batch, dtype=torch.float32),
            target_size=torch.tensor([[size * 8, size * 8]] * batch, dtype=torch.float32),
            crop_coords=torch.zeros(batch, 2),
            return_dict=False,
        )

    return ModelSpec("cogview4", "CogView4Transformer2DModel", config, make_inputs)


#: Tiny configurations (2-3 blocks per list) used by the tests; call the factories for other sizes.
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (flux(), wan(), hunyuan_video(), ltx_video(), cogview4())}
FACTORIES = {"flux": flux, "wan": wan, "hunyuan_video": hunyuan_video, "ltx_video": ltx_video, "cogview4": cogview4}


def build(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """The tiny model ``name`` and a function giving its inputs for a batch size."""
    return MODELS[name].build(dtype, device)


def denoise(model, spec: ModelSpec, steps: int, *, batch: int = 1, seed: int = 0, branches=(None,),
            context: bool = False, dtype: torch.dtype = torch.float32, device="cpu", on_step=None, after_call=None):
    """A flow-matching Euler loop: ``x <- x + (t_next - t) * v`` with the timestep falling from 1 to 0.

    ``branches`` lists per-step conditioning overrides (``None`` = the base inputs): two entries give a CFG-style
    loop with one call per branch and the guided velocity ``v_uncond + 2 * (v_cond - v_uncond)``. With
    ``context=True`` each call runs inside ``model.cache_context(name)`` (names "cond" and "uncond"), as diffusers
    pipelines do, and ``after_call(name)`` runs inside the context after each call (to read a hook's state). The
    latents are copied into one fixed buffer each step so their layout never changes (dynamo
    guards on strides; a loop that changes them recompiles even a plain ``torch.compile``). Returns the final
    latents and the list of every call's output.
    """
    gen = torch.Generator().manual_seed(seed)
    base = spec.make_inputs(batch, gen)
    variants = [dict(base, **(override or {})) for override in branches]
    names = ["cond", "uncond"][: len(branches)] if len(branches) > 1 else ["cond"]
    move = lambda v: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) if torch.is_tensor(v) else v
    variants = [{k: move(v) for k, v in kwargs.items()} for kwargs in variants]
    latents = variants[0]["hidden_states"].clone()
    buffer = torch.empty_like(latents)
    ts = torch.linspace(1.0, 0.0, steps + 1)
    outputs = []
    with torch.no_grad():
        for i in range(steps):
            buffer.copy_(latents)
            t = torch.full((batch,), float(ts[i]) * spec.timestep_scale, device=device, dtype=dtype)
            velocities = []
            for name, kwargs in zip(names, variants):
                call = dict(kwargs, hidden_states=buffer, timestep=t)
                if context:
                    with model.cache_context(name):
                        out = model(**call)[0]
                        if after_call is not None:
                            after_call(name)
                else:
                    out = model(**call)[0]
                outputs.append(out.clone())
                velocities.append(out)
            v = velocities[0] if len(velocities) == 1 else velocities[1] + 2.0 * (velocities[0] - velocities[1])
            latents = latents + (ts[i + 1] - ts[i]).item() * v
            if on_step is not None:
                on_step(i)
    return latents, outputs
