"""The five models the backend was first built on (Flux, Wan, HunyuanVideo, LTX-Video, CogView4), as factories:
the tiny sizes the tests use, and any other size (the benchmark's presets call them with larger widths)."""

from __future__ import annotations

import dataclasses

import torch

from .spec import ModelSpec, randn

__all__ = ["MODELS", "FACTORIES", "flux", "wan", "hunyuan_video", "ltx_video", "cogview4"]

_STREAMS = ("encoder_hidden_states", "hidden_states")


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
        ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(8.0), torch.arange(tokens // 8.0),
                                         indexing="ij"), -1).reshape(-1, 3)[:tokens]
        return dict(
            hidden_states=randn(gen, batch, tokens, 16),
            encoder_hidden_states=randn(gen, batch, text, 32),
            pooled_projections=randn(gen, batch, 16),
            timestep=torch.ones(batch),
            img_ids=ids,
            txt_ids=torch.zeros(text, 3),
            guidance=torch.full((batch,), 3.5),
            return_dict=False,
        )

    return ModelSpec("flux", "FluxTransformer2DModel", config, make_inputs,
                     make_timestep=lambda t, batch: torch.full((batch,), t),
                     sequence=("transformer_blocks", "single_transformer_blocks"),
                     carries={"FluxTransformerBlock": _STREAMS, "FluxSingleTransformerBlock": _STREAMS}, hook=True)


def wan(hidden: int = 32, layers: int = 3, frames: int = 2, size: int = 8, text: int = 12) -> ModelSpec:
    heads = max(1, hidden // 16)
    config = dict(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hidden // heads, in_channels=4,
        out_channels=4, text_dim=16, freq_dim=32, ffn_dim=2 * hidden, num_layers=layers, rope_max_seq_len=32,
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=randn(gen, batch, 4, frames, size, size),
            timestep=torch.full((batch,), 1000.0),
            encoder_hidden_states=randn(gen, batch, text, 16),
            return_dict=False,
        )

    return ModelSpec("wan", "WanTransformer3DModel", config, make_inputs, sequence=("blocks",),
                     carries={"WanTransformerBlock": ("hidden_states",)}, hook=True)


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
            hidden_states=randn(gen, batch, 4, frames, size, size),
            timestep=torch.full((batch,), 1000.0),
            encoder_hidden_states=randn(gen, batch, text, 16),
            encoder_attention_mask=torch.ones(batch, text),
            pooled_projections=randn(gen, batch, 8),
            guidance=torch.full((batch,), 6000.0),
            return_dict=False,
        )

    streams = ("hidden_states", "encoder_hidden_states")
    return ModelSpec("hunyuan_video", "HunyuanVideoTransformer3DModel", config, make_inputs,
                     sequence=("transformer_blocks", "single_transformer_blocks"),
                     carries={"HunyuanVideoTransformerBlock": streams, "HunyuanVideoSingleTransformerBlock": streams},
                     hook=True)


def ltx_video(hidden: int = 32, layers: int = 3, frames: int = 2, size: int = 4, text: int = 12) -> ModelSpec:
    heads = max(1, hidden // 16)
    config = dict(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=heads,
        attention_head_dim=hidden // heads, cross_attention_dim=hidden, num_layers=layers, caption_channels=16,
    )

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        return dict(
            hidden_states=randn(gen, batch, frames * size * size, 8),
            encoder_hidden_states=randn(gen, batch, text, 16),
            timestep=torch.full((batch,), 1000.0),
            encoder_attention_mask=torch.ones(batch, text),
            num_frames=frames, height=size, width=size,
            return_dict=False,
        )

    return ModelSpec("ltx_video", "LTXVideoTransformer3DModel", config, make_inputs, sequence=("transformer_blocks",),
                     carries={"LTXVideoTransformerBlock": ("hidden_states",)}, hook=True)


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
            hidden_states=randn(gen, batch, 4, size, size),
            encoder_hidden_states=randn(gen, batch, text, 16),
            timestep=torch.full((batch,), 1000.0),
            original_size=torch.tensor([[size * 8, size * 8]] * batch, dtype=torch.float32),
            target_size=torch.tensor([[size * 8, size * 8]] * batch, dtype=torch.float32),
            crop_coords=torch.zeros(batch, 2),
            return_dict=False,
        )

    return ModelSpec("cogview4", "CogView4Transformer2DModel", config, make_inputs, sequence=("transformer_blocks",),
                     carries={"CogView4TransformerBlock": ("hidden_states", "encoder_hidden_states")}, hook=True)


FACTORIES = {"flux": flux, "wan": wan, "hunyuan_video": hunyuan_video, "ltx_video": ltx_video, "cogview4": cogview4}
#: Tiny configurations (2-3 blocks per list); call the factories for other sizes. Also Flux with as many text as
#: image tokens (256x256 px with 256 text tokens in the real model), where a block's two streams have one shape.
MODELS = [factory() for factory in FACTORIES.values()] + [dataclasses.replace(flux(text=64), name="flux_equal_tokens")]
