"""Tiny image transformers with a text stream next to the image stream (MMDiT / Flux-like and their relatives).

Each entry builds the real diffusers class with a few small blocks and random weights, and feeds it what the
matching pipeline passes: 16 image tokens (a 4x4 packed grid or an 8x8 latent with 2x2 patches) and 12 text tokens,
unless a model says otherwise. Models that pipelines feed with image-conditioning tokens appended to the latent
tokens along the sequence (Flux Kontext, FLUX.2 editing, Qwen-Image-Edit) take the latents AND the condition as one
``hidden_states``; their ``velocity`` keeps the first N (noisy) tokens of the output and returns zeros for the
condition tokens, so that a sampler's update ``x + dt * v`` leaves the condition untouched, as those pipelines do
(they slice ``noise_pred[:, :N]`` and concatenate the fixed image latents again each step). The HunyuanImage 2.1
refiner does the same along channels. Qwen-Image 2.1 returns its whole joint text+image sequence; its ``velocity``
keeps the last N tokens, as its pipeline does.

Known limits (see each section): HiDream-I1, HunyuanImage 2.1 (with its ByT5 glyph tokens) and Qwen-Image 2.1 are
not one graph under ``torch.compile(fullgraph=True)``; PRX's freshly built blocks are identities (zero-initialised
gates); Nucleus-MoE is built dense because its experts' weights are never initialised.
"""

from __future__ import annotations

import torch

from .spec import ModelSpec, fill_rope_table, randn, unit_timestep

IMG_SIDE = 4  # 4x4 = 16 image tokens for the packed (Flux-like) models
IMG_TOKENS = IMG_SIDE * IMG_SIDE
TXT_TOKENS = 12
TXT_DIM = 24  # text-encoder width fed to the models (differs from the hidden size on purpose)


# --------------------------------------------------------------------------------------------------------------
# small helpers


def _grid_ids(side: int, first: float = 0.0) -> torch.Tensor:
    """(side*side, 3) Flux position ids: (frame/offset, row, column)."""
    rows = torch.arange(side).repeat_interleave(side)
    cols = torch.arange(side).repeat(side)
    return torch.stack([torch.full_like(rows, 0) + first, rows, cols], dim=-1).float()


def _grid_ids4(side: int, frame: int = 0) -> torch.Tensor:
    """(side*side, 4) FLUX.2 / Flux3 ids: (t, h, w, l)."""
    rows = torch.arange(side).repeat_interleave(side)
    cols = torch.arange(side).repeat(side)
    return torch.stack([torch.full_like(rows, frame), rows, cols, torch.zeros_like(rows)], dim=-1)


def _text_ids4(n: int) -> torch.Tensor:
    """(n, 4) FLUX.2 / Flux3 text ids: only the last axis counts the token."""
    z = torch.zeros(n, dtype=torch.long)
    return torch.stack([z, z, z, torch.arange(n)], dim=-1)


def _pad_keep_first(n: int):
    """velocity for latents+condition concatenated along the sequence: the first ``n`` tokens, zeros after."""

    def velocity(output):
        out = output[0]
        return torch.cat([out[:, :n], torch.zeros_like(out[:, n:])], dim=1)

    return velocity


def _zero(*names: str):
    """uncond overrides: the given kwargs zeroed (tensors, or lists of tensors)."""

    def uncond(inputs: dict) -> dict:
        res = {}
        for k in names:
            v = inputs[k]
            res[k] = [torch.zeros_like(x) for x in v] if isinstance(v, list) else torch.zeros_like(v)
        return res

    return uncond


def _text_mask(batch: int, n: int, valid: int) -> torch.Tensor:
    m = torch.zeros(batch, n, dtype=torch.bool)
    m[:, :valid] = True
    return m


# --------------------------------------------------------------------------------------------------------------
# SD3 / SD3.5 (MMDiT): one list of joint blocks; the last block is context_pre_only (its text output is None)

_SD3 = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    num_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    caption_projection_dim=32,  # must equal heads * head_dim
    joint_attention_dim=TXT_DIM,
    pooled_projection_dim=16,
    out_channels=4,
    pos_embed_max_size=16,
    dual_attention_layers=(),
    qk_norm=None,
)


def _sd3_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "pooled_projections": randn(gen, batch, 16),
        "timestep": torch.full((batch,), 500.0),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# FLUX.1 (schnell: no guidance embedding; Kontext: guidance + image tokens appended to the latent tokens)

_FLUX = dict(
    patch_size=1,
    in_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    pooled_projection_dim=16,
    axes_dims_rope=(4, 6, 6),
)


def _flux_schnell_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "pooled_projections": randn(gen, batch, 16),
        "timestep": torch.full((batch,), 0.5),
        "img_ids": _grid_ids(IMG_SIDE),
        "txt_ids": torch.zeros(TXT_TOKENS, 3),
        "return_dict": False,
    }


def _flux_kontext_inputs(batch, gen):
    latents = randn(gen, batch, IMG_TOKENS, 16)
    image_latents = randn(gen, batch, IMG_TOKENS, 16)  # the reference image, packed the same way
    return {
        # FluxKontextPipeline: torch.cat([latents, image_latents], dim=1); ids likewise along dim 0,
        # the reference image's ids carrying 1 in their first coordinate
        "hidden_states": torch.cat([latents, image_latents], dim=1),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "pooled_projections": randn(gen, batch, 16),
        "timestep": torch.full((batch,), 0.5),
        "guidance": torch.full((batch,), 2.5),
        "img_ids": torch.cat([_grid_ids(IMG_SIDE), _grid_ids(IMG_SIDE, first=1.0)], dim=0),
        "txt_ids": torch.zeros(TXT_TOKENS, 3),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# FLUX.2 (dev: guidance embedding; klein: none, true CFG). Single blocks take the concatenated [text, image] tokens.

_FLUX2 = dict(
    patch_size=1,
    in_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(4, 4, 4, 4),
)


def _flux2_inputs(guidance: bool, reference: bool = False):
    def make(batch, gen):
        latents = randn(gen, batch, IMG_TOKENS, 16)
        img_ids = _grid_ids4(IMG_SIDE)
        if reference:
            # Flux2KleinPipeline with an input image: cat([latents, image_latents], dim=1), the image's ids
            # on time coordinate 10
            latents = torch.cat([latents, randn(gen, batch, IMG_TOKENS, 16)], dim=1)
            img_ids = torch.cat([img_ids, _grid_ids4(IMG_SIDE, frame=10)], dim=0)
        inputs = {
            "hidden_states": latents,
            "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
            "timestep": torch.full((batch,), 0.5),
            # the pipelines pass batched (B, S, 4) ids; the model uses the first row
            "img_ids": img_ids.unsqueeze(0).expand(batch, -1, -1),
            "txt_ids": _text_ids4(TXT_TOKENS).unsqueeze(0).expand(batch, -1, -1),
            "return_dict": False,
        }
        if guidance:
            inputs["guidance"] = torch.full((batch,), 4.0)
        return inputs

    return make


# --------------------------------------------------------------------------------------------------------------
# Flux3: per-mode blocks (text alone, image alone, condition image alone), then joint "single" blocks that carry
# (text, content) as two streams.

_FLUX3 = dict(
    in_channels=16,
    cond_in_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    timestep_channels=32,
    mlp_ratio=3.0,
    axes_dims_rope=(4, 4, 4, 4),
)


def _flux3_inputs(cond: bool):
    def make(batch, gen):
        inputs = {
            "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
            "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
            "timestep": torch.full((batch,), 0.5),
            "img_ids": _grid_ids4(IMG_SIDE),
            "txt_ids": _text_ids4(TXT_TOKENS),
            "return_dict": False,
        }
        if cond:
            # a 3x3 reference image (9 tokens) in its own kwarg; the model appends it after the image tokens
            inputs["image_cond_hidden_states"] = randn(gen, batch, 9, 16)
            inputs["image_cond_ids"] = _grid_ids4(3, frame=1)
        return inputs

    return make


# --------------------------------------------------------------------------------------------------------------
# Chroma (Flux-schnell derivative: no pooled text, modulation from an approximator, attention mask over text+image)

_CHROMA = dict(
    patch_size=1,
    in_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    axes_dims_rope=(4, 6, 6),
    approximator_num_channels=8,
    approximator_hidden_dim=16,
    approximator_layers=2,
)


def _chroma_mask(batch, valid):
    # ChromaPipeline: the T5 mask (valid tokens plus one padding token) followed by ones for the image tokens
    return torch.cat([_text_mask(batch, TXT_TOKENS, valid), torch.ones(batch, IMG_TOKENS, dtype=torch.bool)], 1)


def _chroma_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 0.5),
        "img_ids": _grid_ids(IMG_SIDE),
        "txt_ids": torch.zeros(TXT_TOKENS, 3),
        "attention_mask": _chroma_mask(batch, 9),
        "return_dict": False,
    }


def _chroma_uncond(inputs):
    batch = inputs["hidden_states"].shape[0]
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "attention_mask": _chroma_mask(batch, 2),
    }


# --------------------------------------------------------------------------------------------------------------
# AuraFlow: joint (MMDiT) blocks, then single blocks on [register+text, image] concatenated

_AURA = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    num_mmdit_layers=2,
    num_single_dit_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    caption_projection_dim=32,  # must equal heads * head_dim
    joint_attention_dim=TXT_DIM,
    out_channels=4,
    pos_embed_max_size=64,
)


def _aura_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 0.5),  # AuraFlowPipeline passes t / 1000
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# Bria 3.x (Flux-like), Bria FIBO (Flux-like, one extra text-encoder layer per block), FIBO 2 (Z-Image-like)

_BRIA = dict(
    patch_size=1,
    in_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    pooled_projection_dim=None,
    axes_dims_rope=[0, 8, 8],
)


def _bria_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 500.0),  # BriaPipeline passes the scheduler's t (0..1000)
        "img_ids": _grid_ids(IMG_SIDE),
        "txt_ids": torch.zeros(TXT_TOKENS, 3),
        "return_dict": False,
    }


_BRIA_FIBO = dict(_BRIA, text_encoder_dim=20)


def _bria_fibo_inputs(batch, gen):
    inputs = _bria_inputs(batch, gen)
    # one text-encoder hidden state per block (2 joint + 2 single), each projected to half the width
    inputs["text_encoder_layers"] = [randn(gen, batch, TXT_TOKENS, 20) for _ in range(4)]
    return inputs


_BRIA_FIBO2 = dict(
    in_channels=4,
    patch_size=2,
    dim=32,
    n_layers=3,
    n_refiner_layers=2,
    n_heads=2,
    cap_feat_dim=TXT_DIM,
    injection_layer_ids=(1,),
    perceiver_num_layers=2,
    min_num_gist_tokens=8,
    max_num_gist_tokens=16,
    gist_step=8,
    gist_min_text_len=4,
    gist_max_text_len=36,
    axes_dims=(4, 6, 6),
    axes_lens=(32, 16, 16),
)


def _bria_fibo2_inputs(edit: bool):
    def make(batch, gen):
        inputs = {
            "hidden_states": randn(gen, batch, 4, 8, 8),
            "timestep": torch.full((batch,), 0.5),
            # (batch, 1 + len(injection_layer_ids), text_len, cap_feat_dim): the Perceiver's bundle, then one per
            # injection block. 12 text tokens -> 16 gist tokens. No mask: the pipeline drops an all-true mask.
            "encoder_hidden_states": randn(gen, batch, 2, TXT_TOKENS, TXT_DIM),
            "return_dict": False,
        }
        if edit:
            inputs["context_latents"] = [randn(gen, batch, 4, 4, 8)]  # one 2x4-token image to edit
        return inputs

    return make


# --------------------------------------------------------------------------------------------------------------
# LongCat-Image, Ovis-Image (Flux-like)

_LONGCAT = dict(
    patch_size=1,
    in_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    pooled_projection_dim=16,
    axes_dims_rope=[4, 6, 6],
)

_OVIS = dict(
    patch_size=1,
    in_channels=16,
    out_channels=16,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    axes_dims_rope=(4, 6, 6),
)


def _flux_like_inputs(batch, gen):
    """LongCat / Ovis pipelines: packed latents, 2-D ids, sigma in [0, 1], no pooled text, no guidance."""
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 0.5),
        "img_ids": _grid_ids(IMG_SIDE),
        "txt_ids": torch.zeros(TXT_TOKENS, 3),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# Qwen-Image (one list of dual-stream blocks), Qwen-Image-Edit (reference latents appended), Qwen-Image 2.1

_QWEN = dict(
    patch_size=2,
    in_channels=16,  # 4 latent channels x 2x2 patch, packed by the pipeline
    out_channels=4,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    guidance_embeds=False,
    axes_dims_rope=(8, 4, 4),
)


def _qwen_inputs(edit: bool):
    def make(batch, gen):
        latents = randn(gen, batch, IMG_TOKENS, 16)
        shapes = [(1, IMG_SIDE, IMG_SIDE)]
        if edit:
            # QwenImageEditPipeline: cat([latents, image_latents], dim=1), img_shapes lists both grids
            latents = torch.cat([latents, randn(gen, batch, IMG_TOKENS, 16)], dim=1)
            shapes = shapes + [(1, IMG_SIDE, IMG_SIDE)]
        return {
            "hidden_states": latents,
            "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
            # no encoder_hidden_states_mask: the pipelines drop an all-true mask (always so at batch 1)
            "timestep": torch.full((batch,), 0.5),
            "img_shapes": [shapes] * batch,
            "return_dict": False,
        }

    return make


_QWEN21 = dict(
    patch_size=1,
    in_channels=16,
    out_channels=16,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    context_in_dim=TXT_DIM,
    mlp_ratio=3,
    axes_dims_rope=(4, 6, 6),
    causal_condition=True,
)


def _qwen21_inputs(batch, gen):
    # text-to-image: img_mask marks, after the 12 text slots, one slot per 2x2 group of the 16 target tokens
    img_mask = torch.cat(
        [torch.zeros(batch, TXT_TOKENS, dtype=torch.bool), torch.ones(batch, IMG_TOKENS // 4, dtype=torch.bool)], 1
    )
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 0.5),
        "img_shapes": [[(1, IMG_SIDE, IMG_SIDE)]] * batch,
        "img_mask": img_mask,
        "return_dict": False,
    }


def _last_tokens(n: int):
    """Qwen-Image 2.1 returns the whole joint sequence (text slots, then the target image): keep the last n."""

    def velocity(output):
        return output[0][:, -n:]

    return velocity


# --------------------------------------------------------------------------------------------------------------
# HiDream-I1: dual-stream then single-stream blocks, both with an MoE feed-forward; per-block Llama layer tokens

_HIDREAM = dict(
    patch_size=2,
    in_channels=4,
    out_channels=4,
    num_layers=2,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    caption_channels=[20, TXT_DIM],  # [T5 width, Llama width]
    text_emb_dim=16,
    num_routed_experts=4,
    num_activated_experts=2,
    axes_dims_rope=(8, 4, 4),
    max_resolution=(16, 16),
    llama_layers=(0, 1, 2, 3),  # one Llama layer per block (2 dual + 2 single)
    force_inference_output=True,
)


def _hidream_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timesteps": torch.full((batch,), 500.0),
        "encoder_hidden_states_t5": randn(gen, batch, TXT_TOKENS, 20),
        "encoder_hidden_states_llama3": randn(gen, 4, batch, 10, TXT_DIM),  # (layers, batch, tokens, width)
        "pooled_embeds": randn(gen, batch, 16),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# HunyuanImage 2.1: token refiner on the text, dual-stream then single-stream blocks, ByT5 glyph tokens merged in

_HUNYUAN = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_single_layers=2,
    num_refiner_layers=2,
    patch_size=(1, 1),
    guidance_embeds=False,
    text_embed_dim=TXT_DIM,
    text_embed_2_dim=20,
    rope_axes_dim=(8, 8),
)


def _hunyuan_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, IMG_SIDE, IMG_SIDE),
        "timestep": torch.full((batch,), 500.0),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 9),
        # the pipeline always passes the ByT5 glyph embedding (all-false mask when the prompt quotes no text)
        "encoder_hidden_states_2": randn(gen, batch, 6, 20),
        "encoder_attention_mask_2": _text_mask(batch, 6, 3),
        "return_dict": False,
    }


def _hunyuan_uncond(inputs):
    batch = inputs["hidden_states"].shape[0]
    res = {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 3),
    }
    if inputs.get("encoder_hidden_states_2") is not None:  # no glyph text in the negative prompt
        res["encoder_hidden_states_2"] = torch.zeros_like(inputs["encoder_hidden_states_2"])
        res["encoder_attention_mask_2"] = _text_mask(batch, 6, 0)
    return res


_HUNYUAN_REFINER = dict(
    _HUNYUAN,
    in_channels=8,  # the refiner pipeline concatenates [latents, cond_latents] along channels
    out_channels=4,
    patch_size=(1, 1, 1),
    rope_axes_dim=(4, 6, 6),
    guidance_embeds=True,
    text_embed_2_dim=None,  # no ByT5 glyph branch
)


def _hunyuan_refiner_inputs(batch, gen):
    latents = randn(gen, batch, 4, 1, IMG_SIDE, IMG_SIDE)  # (B, C, frames=1, H, W)
    cond_latents = randn(gen, batch, 4, 1, IMG_SIDE, IMG_SIDE)
    return {
        "hidden_states": torch.cat([latents, cond_latents], dim=1),
        "timestep": torch.full((batch,), 500.0),
        "guidance": torch.full((batch,), 3250.0),  # distilled_guidance_scale * 1000
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 9),
        "return_dict": False,
    }


def _hunyuan_refiner_uncond(inputs):
    batch = inputs["hidden_states"].shape[0]
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 3),
    }


def _pad_condition_channels(output):
    """velocity for latents + condition concatenated along channels (as many condition channels as latent ones):
    the model predicts the latent channels; zeros for the condition channels, so a sampler's update leaves them."""
    out = output[0]
    return torch.cat([out, torch.zeros_like(out)], dim=1)


# --------------------------------------------------------------------------------------------------------------
# Krea 2: text fusion (layer-wise blocks across the tapped encoder layers, then refiner blocks), then one list of
# single-stream blocks over [text, image]

_KREA2 = dict(
    in_channels=16,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=64,
    timestep_embed_dim=16,
    text_hidden_dim=TXT_DIM,
    num_text_layers=3,
    text_num_attention_heads=2,
    text_num_key_value_heads=1,
    text_intermediate_size=32,
    num_layerwise_text_blocks=2,
    num_refiner_text_blocks=2,
    axes_dims_rope=(4, 6, 6),
    rope_theta=1000.0,
)


def _krea2_inputs(batch, gen):
    pos = torch.zeros(TXT_TOKENS + IMG_TOKENS, 3)
    pos[TXT_TOKENS:, 1] = torch.arange(IMG_SIDE).repeat_interleave(IMG_SIDE).float()
    pos[TXT_TOKENS:, 2] = torch.arange(IMG_SIDE).repeat(IMG_SIDE).float()
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, 3, TXT_DIM),  # (B, tokens, tapped layers, width)
        "timestep": torch.full((batch,), 0.5),
        "position_ids": pos,
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 10),
        "return_dict": False,
    }


def _krea2_uncond(inputs):
    batch = inputs["hidden_states"].shape[0]
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 2),
    }


# --------------------------------------------------------------------------------------------------------------
# Nucleus-MoE-Image: single list of image blocks that read (but do not update) the text. Built dense, as in
# diffusers' own test: the routed experts (SwiGLUExperts) allocate their weights with torch.empty and never
# initialise them, so a randomly built MoE layer holds whatever memory it got (NaN outputs, run to run).

_NUCLEUS = dict(
    patch_size=2,
    in_channels=16,
    out_channels=4,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=TXT_DIM,
    axes_dims_rope=(8, 4, 4),
    moe_enabled=False,
    capacity_factors=[8.0, 8.0, 8.0],
)


def _nucleus_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, IMG_TOKENS, 16),
        "img_shapes": [(1, IMG_SIDE, IMG_SIDE)] * batch,
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 0.5),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# GLM-Image: one list of dual-stream blocks (returning image first); prior (AR) tokens added to the image tokens

_GLM = dict(
    patch_size=2,
    in_channels=4,
    out_channels=4,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    text_embed_dim=TXT_DIM,
    time_embed_dim=16,
    condition_dim=8,
    prior_vq_quantizer_codebook_size=64,
)


def _glm_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "prior_token_id": torch.randint(0, 64, (batch, IMG_TOKENS), generator=gen),
        "prior_token_drop": torch.zeros(batch, IMG_TOKENS, dtype=torch.bool),
        "timestep": torch.full((batch,), 499.0),
        "target_size": torch.tensor([[64.0, 64.0]] * batch),
        "crop_coords": torch.zeros(batch, 2),
        "return_dict": False,
    }


def _glm_uncond(inputs):
    # GlmImagePipeline: negative glyph embeddings and every prior token dropped
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "prior_token_drop": torch.ones_like(inputs["prior_token_drop"]),
    }


# --------------------------------------------------------------------------------------------------------------
# PRX: one list of blocks; text is read through joint attention but not carried from block to block.
# Caution: PRX's Modulation zero-initialises its projection, so with freshly built weights every gate is 0, every
# block is the identity (zero residual) and the output ignores the text: the entry documents the call, but a test
# that needs non-trivial blocks must perturb ``blocks.*.modulation.lin`` after ``build()``.

_PRX = dict(
    in_channels=4,
    patch_size=2,
    context_in_dim=TXT_DIM,
    hidden_size=32,
    mlp_ratio=2.0,
    num_heads=2,
    depth=3,
    axes_dim=[8, 8],
    theta=10_000,
)


def _prx_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timestep": torch.full((batch,), 0.5),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "attention_mask": _text_mask(batch, TXT_TOKENS, 9),
        "return_dict": False,
    }


def _prx_uncond(inputs):
    batch = inputs["hidden_states"].shape[0]
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "attention_mask": _text_mask(batch, TXT_TOKENS, 2),
    }


# --------------------------------------------------------------------------------------------------------------
# DreamLite: the spatial transformer inside DreamLite's UNet, configured as the UNet builds it (layer norm, so the
# timestep is accepted but unused: the UNet's time embedding goes to its ResNets)

_DREAMLITE = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=32,
    num_layers=3,
    norm_num_groups=8,
    cross_attention_dim=TXT_DIM,
    use_linear_projection=True,
    qk_norm="rms_norm",
    ff_mult=2,
)


def _dreamlite_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 32, IMG_SIDE, IMG_SIDE),
        "encoder_hidden_states": randn(gen, batch, TXT_TOKENS, TXT_DIM),
        "timestep": torch.full((batch,), 500.0),
        "encoder_attention_mask": _text_mask(batch, TXT_TOKENS, 9),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------

MODELS: list[ModelSpec] = [
    ModelSpec(
        name="sd3",
        sequence=('transformer_blocks',),
        carries={'JointTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        model_cls="SD3Transformer2DModel",
        config=_SD3,
        make_inputs=_sd3_inputs,
        uncond=_zero("encoder_hidden_states", "pooled_projections"),
        hook_note='crashes: the last block returns no text stream',
    ),
    ModelSpec(
        name="sd35",
        sequence=('transformer_blocks',),
        carries={'JointTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        model_cls="SD3Transformer2DModel",
        config=dict(_SD3, dual_attention_layers=(0,), qk_norm="rms_norm"),
        make_inputs=_sd3_inputs,
        uncond=_zero("encoder_hidden_states", "pooled_projections"),
        hook_note='crashes: the last block returns no text stream',
    ),
    ModelSpec(
        name="flux_schnell",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'FluxTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'FluxSingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="FluxTransformer2DModel",
        config=dict(_FLUX, guidance_embeds=False),
        make_inputs=_flux_schnell_inputs,
        make_timestep=unit_timestep,
        uncond=_zero("encoder_hidden_states", "pooled_projections"),
    ),
    ModelSpec(
        name="flux_kontext",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'FluxTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'FluxSingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="FluxTransformer2DModel",
        config=dict(_FLUX, guidance_embeds=True),
        make_inputs=_flux_kontext_inputs,
        make_timestep=unit_timestep,
        uncond=_zero("encoder_hidden_states", "pooled_projections"),
        velocity=_pad_keep_first(IMG_TOKENS),
    ),
    ModelSpec(
        name="flux2",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'Flux2TransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'Flux2SingleTransformerBlock': ('hidden_states',)},
        model_cls="Flux2Transformer2DModel",
        config=dict(_FLUX2, guidance_embeds=True),
        make_inputs=_flux2_inputs(guidance=True),
        make_timestep=unit_timestep,
        hook_note='crashes: text and image are joined between the block lists',
    ),
    ModelSpec(
        name="flux2_klein",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'Flux2TransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'Flux2SingleTransformerBlock': ('hidden_states',)},
        model_cls="Flux2Transformer2DModel",
        config=dict(_FLUX2, guidance_embeds=False),
        make_inputs=_flux2_inputs(guidance=False),
        make_timestep=unit_timestep,
        hook_note='crashes: text and image are joined between the block lists',
    ),
    ModelSpec(
        name="flux2_klein_edit",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'Flux2TransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'Flux2SingleTransformerBlock': ('hidden_states',)},
        model_cls="Flux2Transformer2DModel",
        config=dict(_FLUX2, guidance_embeds=False),
        make_inputs=_flux2_inputs(guidance=False, reference=True),
        make_timestep=unit_timestep,
        velocity=_pad_keep_first(IMG_TOKENS),
        hook_note='crashes: text and image are joined between the block lists',
    ),
    ModelSpec(
        name="flux3",
        sequence=('mode_blocks.image', 'single_transformer_blocks'),
        carries={'Flux3ModeTransformerBlock': ('hidden_states',), 'Flux3SingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        model_cls="Flux3Transformer2DModel",
        config=_FLUX3,
        make_inputs=_flux3_inputs(cond=False),
        make_timestep=unit_timestep,
        hook_note='differs: measures the first single-stream block, not the first image block',
    ),
    ModelSpec(
        name="flux3_cond",
        sequence=('single_transformer_blocks',),
        carries={'Flux3ModeTransformerBlock': ('hidden_states',), 'Flux3SingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        model_cls="Flux3Transformer2DModel",
        config=_FLUX3,
        make_inputs=_flux3_inputs(cond=True),
        make_timestep=unit_timestep,
        hook=True,
    ),
    ModelSpec(
        name="chroma",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'ChromaTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'ChromaSingleTransformerBlock': ('hidden_states',)},
        model_cls="ChromaTransformer2DModel",
        config=_CHROMA,
        make_inputs=_chroma_inputs,
        make_timestep=unit_timestep,
        uncond=_chroma_uncond,
        hook_note='crashes: text and image are joined between the block lists',
    ),
    ModelSpec(
        name="auraflow",
        sequence=('joint_transformer_blocks', 'single_transformer_blocks'),
        carries={'AuraFlowJointTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'AuraFlowSingleTransformerBlock': ('hidden_states',)},
        model_cls="AuraFlowTransformer2DModel",
        config=_AURA,
        make_inputs=_aura_inputs,
        make_timestep=unit_timestep,
        hook_note='differs: text and image are joined between the block lists',
    ),
    ModelSpec(
        name="bria",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'BriaTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'BriaSingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        model_cls="BriaTransformer2DModel",
        config=_BRIA,
        make_inputs=_bria_inputs,
        hook_note="crashes: its registry has the block's two streams in the wrong order",
    ),
    ModelSpec(
        name="bria_fibo",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'BriaFiboTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'BriaFiboSingleTransformerBlock': ('hidden_states',)},
        model_cls="BriaFiboTransformer2DModel",
        config=_BRIA_FIBO,
        make_inputs=_bria_fibo_inputs,
        uncond=_zero("encoder_hidden_states", "text_encoder_layers"),
        hook_note='crashes: text and image are joined between the block lists',
    ),
    ModelSpec(
        name="bria_fibo2",
        prepare=fill_rope_table,
        sequence=('layers',),
        carries={'BriaFibo2TransformerBlock': ('x',)},
        model_cls="BriaFibo2Transformer2DModel",
        config=_BRIA_FIBO2,
        make_inputs=_bria_fibo2_inputs(edit=False),
        make_timestep=unit_timestep,
        hook_note='crashes: asks each block for `hidden_states`; its stream is `x`',
    ),
    ModelSpec(
        name="bria_fibo2_edit",
        prepare=fill_rope_table,
        sequence=('layers',),
        carries={'BriaFibo2TransformerBlock': ('x',)},
        model_cls="BriaFibo2Transformer2DModel",
        config=_BRIA_FIBO2,
        make_inputs=_bria_fibo2_inputs(edit=True),
        make_timestep=unit_timestep,
        hook_note='crashes: asks each block for `hidden_states`; its stream is `x`',
    ),
    ModelSpec(
        name="longcat_image",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'LongCatImageTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'LongCatImageSingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="LongCatImageTransformer2DModel",
        config=_LONGCAT,
        make_inputs=_flux_like_inputs,
        make_timestep=unit_timestep,
    ),
    ModelSpec(
        name="ovis_image",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'OvisImageTransformerBlock': ('encoder_hidden_states', 'hidden_states'), 'OvisImageSingleTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="OvisImageTransformer2DModel",
        config=_OVIS,
        make_inputs=_flux_like_inputs,
        make_timestep=unit_timestep,
    ),
    ModelSpec(
        name="qwenimage",
        sequence=('transformer_blocks',),
        carries={'QwenImageTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="QwenImageTransformer2DModel",
        config=_QWEN,
        make_inputs=_qwen_inputs(edit=False),
        make_timestep=unit_timestep,
    ),
    ModelSpec(
        name="qwenimage_edit",
        sequence=('transformer_blocks',),
        carries={'QwenImageTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="QwenImageTransformer2DModel",
        config=_QWEN,
        make_inputs=_qwen_inputs(edit=True),
        make_timestep=unit_timestep,
        velocity=_pad_keep_first(IMG_TOKENS),
    ),
    ModelSpec(
        # Qwen-Image-Edit-2511 style: zero_cond_t modulates the reference tokens with t = 0
        name="qwenimage_edit_zero_cond_t",
        sequence=('transformer_blocks',),
        carries={'QwenImageTransformerBlock': ('encoder_hidden_states', 'hidden_states')},
        hook=True,
        model_cls="QwenImageTransformer2DModel",
        config=dict(_QWEN, zero_cond_t=True),
        make_inputs=_qwen_inputs(edit=True),
        make_timestep=unit_timestep,
        velocity=_pad_keep_first(IMG_TOKENS),
    ),
    ModelSpec(
        # not one graph: QwenImage21Rope calls image_pad_mask.tolist() on a bool tensor (unsupported by dynamo, no
        # config helps), plus repeat_interleave with tensor repeats and int()/tolist() of the prefix length. With
        # fullgraph=False: 9 graphs, the last one holding all blocks, norm_out and proj_out.
        name="qwenimage21",
        sequence=('transformer_blocks',),
        carries={'QwenImage21TransformerBlock': ('hidden_states',)},
        model_cls="QwenImage21Transformer2DModel",
        config=_QWEN21,
        make_inputs=_qwen21_inputs,
        make_timestep=unit_timestep,
        velocity=_last_tokens(IMG_TOKENS),
        fullgraph=False,
        hook=True,
    ),
    ModelSpec(
        # not one graph: every block's MoE feed-forward (MOEFeedForwardSwiGLU.moe_infer) loops over
        # bincount().cpu().numpy().cumsum(), a data-dependent length; no dynamo setting helps.
        name="hidream",
        sequence=('double_stream_blocks', 'single_stream_blocks'),
        carries={'HiDreamBlock': ('hidden_states', 'encoder_hidden_states')},
        model_cls="HiDreamImageTransformer2DModel",
        config=_HIDREAM,
        make_inputs=_hidream_inputs,
        timestep="timesteps",
        uncond=_zero("encoder_hidden_states_t5", "encoder_hidden_states_llama3", "pooled_embeds"),
        fullgraph=False,
        unsupported="every block's MoE feed-forward loops over a data-dependent count of tokens per expert: dynamo breaks each block in two",
    ),
    ModelSpec(
        # not one graph: forward() re-orders text and ByT5 tokens by boolean-mask indexing, and the resulting
        # unbacked lengths of states and masks cannot be proven equal at the attention; one graph without them.
        name="hunyuanimage21",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'HunyuanImageTransformerBlock': ('hidden_states', 'encoder_hidden_states'), 'HunyuanImageSingleTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        model_cls="HunyuanImageTransformer2DModel",
        config=_HUNYUAN,
        make_inputs=_hunyuan_inputs,
        uncond=_hunyuan_uncond,
        fullgraph=False,
        unsupported="the text/ByT5 token reordering by boolean masks leaves dynamo unable to capture the forward: each block is a graph of its own",
    ),
    ModelSpec(
        # HunyuanImage-2.1 refiner as HunyuanImageRefinerPipeline calls it: 5-D latents with the conditioning
        # latents concatenated along channels, guidance embedding, no ByT5 tokens
        name="hunyuanimage21_refiner",
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'HunyuanImageTransformerBlock': ('hidden_states', 'encoder_hidden_states'), 'HunyuanImageSingleTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
        model_cls="HunyuanImageTransformer2DModel",
        config=_HUNYUAN_REFINER,
        make_inputs=_hunyuan_refiner_inputs,
        uncond=_hunyuan_refiner_uncond,
        velocity=_pad_condition_channels,
    ),
    ModelSpec(
        name="krea2",
        sequence=('transformer_blocks',),
        carries={'Krea2TransformerBlock': ('hidden_states',)},
        model_cls="Krea2Transformer2DModel",
        config=_KREA2,
        make_inputs=_krea2_inputs,
        make_timestep=unit_timestep,
        uncond=_krea2_uncond,
        hook=True,
    ),
    ModelSpec(
        name="nucleusmoe_image",
        sequence=('transformer_blocks',),
        carries={'NucleusMoEImageTransformerBlock': ('hidden_states',)},
        hook=True,
        model_cls="NucleusMoEImageTransformer2DModel",
        config=_NUCLEUS,
        make_inputs=_nucleus_inputs,
        make_timestep=unit_timestep,
    ),
    ModelSpec(
        name="glm_image",
        sequence=('transformer_blocks',),
        carries={'GlmImageTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
        model_cls="GlmImageTransformer2DModel",
        config=_GLM,
        make_inputs=_glm_inputs,
        uncond=_glm_uncond,
    ),
    ModelSpec(
        name="prx",
        reinit=("blocks.*.modulation.lin.*",),  # zero-initialised gates: see ModelSpec.reinit
        sequence=('blocks',),
        carries={'PRXBlock': ('hidden_states',)},
        hook=True,
        model_cls="PRXTransformer2DModel",
        config=_PRX,
        make_inputs=_prx_inputs,
        make_timestep=unit_timestep,
        uncond=_prx_uncond,
    ),
    ModelSpec(
        name="dreamlite",
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlockDreamLite': ('hidden_states',)},
        hook=True,
        model_cls="DreamLiteTransformer2DModel",
        config=_DREAMLITE,
        make_inputs=_dreamlite_inputs,
    ),
]
