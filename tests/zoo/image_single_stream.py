"""Tiny single-stream (one token sequence through one block list) diffusion transformers, image and audio.

Each entry builds a real diffusers class (0.42.1) with random weights. Configs follow the spirit of diffusers'
own model tests, shrunk so that every main block list has 2-3 blocks and widths stay at 32-64.
"""

from __future__ import annotations

import torch

from .spec import ModelSpec, long_timestep, unit_timestep, fill_rope_table, randn

__all__ = ["MODELS"]


# --------------------------------------------------------------------------------------------------------------
# PixArt-alpha / PixArt-sigma (PixArtTransformer2DModel): self-attn + cross-attn blocks, AdaLN-single.
# --------------------------------------------------------------------------------------------------------------

_PIXART_SIGMA = dict(
    sample_size=8,
    num_layers=3,
    patch_size=2,
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,  # real checkpoints learn sigma (8 channels); 4 keeps the prediction latent-shaped
    cross_attention_dim=32,
    caption_channels=24,
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    use_additional_conditions=False,
)


def _pixart_sigma_inputs(batch: int, gen: torch.Generator) -> dict:
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0  # a padded prompt: the last 3 tokens are padding
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "encoder_attention_mask": mask,
        "timestep": torch.full((batch,), 500.0),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        "return_dict": False,
    }


# PixArt-alpha at 1024px: the resolution / aspect-ratio micro-conditions are embedded (inner dim divisible by 3).
_PIXART_ALPHA = {
    **_PIXART_SIGMA,
    "attention_head_dim": 24,
    "cross_attention_dim": 48,
    "use_additional_conditions": True,
}


def _pixart_alpha_inputs(batch: int, gen: torch.Generator) -> dict:
    inputs = _pixart_sigma_inputs(batch, gen)
    inputs["added_cond_kwargs"] = {
        "resolution": torch.tensor([[64.0, 64.0]]).repeat(batch, 1),
        "aspect_ratio": torch.tensor([[1.0]]).repeat(batch, 1),
    }
    return inputs


# --------------------------------------------------------------------------------------------------------------
# Sana (SanaTransformer2DModel): linear-attention blocks with cross-attention; Sana-Sprint adds a guidance embed.
# --------------------------------------------------------------------------------------------------------------

_SANA = dict(
    patch_size=1,
    in_channels=4,
    out_channels=4,
    num_layers=3,
    num_attention_heads=2,
    attention_head_dim=16,
    num_cross_attention_heads=2,
    cross_attention_head_dim=16,
    cross_attention_dim=32,
    caption_channels=24,
    sample_size=4,
)


def _sana_inputs(batch: int, gen: torch.Generator) -> dict:
    mask = torch.ones(batch, 12)
    mask[:, 10:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 4, 4),  # 16 image tokens (patch 1)
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "encoder_attention_mask": mask,
        "timestep": torch.full((batch,), 500.0),
        "return_dict": False,
    }


_SANA_SPRINT = {**_SANA, "guidance_embeds": True, "qk_norm": "rms_norm_across_heads", "timestep_scale": 1000.0}


def _sana_sprint_inputs(batch: int, gen: torch.Generator) -> dict:
    inputs = _sana_inputs(batch, gen)
    inputs["timestep"] = torch.full((batch,), 0.5)
    inputs["guidance"] = torch.full((batch,), 4.5)
    return inputs


# --------------------------------------------------------------------------------------------------------------
# DiT (DiTTransformer2DModel): class-conditional, AdaLN-zero; uncond = the null class (index num_embeds_ada_norm).
# --------------------------------------------------------------------------------------------------------------

_DIT_CLASSES = 10
_DIT = dict(
    in_channels=4,
    out_channels=4,  # real DiT learns sigma (8 channels): the pipeline splits it off; 4 keeps the shape
    activation_fn="gelu-approximate",
    num_attention_heads=2,
    attention_head_dim=16,
    attention_bias=True,
    num_layers=3,
    norm_type="ada_norm_zero",
    num_embeds_ada_norm=_DIT_CLASSES,
    patch_size=2,
    sample_size=8,
)


def _dit_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timestep": long_timestep(0.5, batch),
        "class_labels": torch.arange(batch, dtype=torch.long) % _DIT_CLASSES,
        "return_dict": False,
    }


def _dit_uncond(inputs: dict) -> dict:
    # DiTPipeline uses class id == num_classes (the extra CFG row of the label table) for the null class.
    return {"class_labels": torch.full_like(inputs["class_labels"], _DIT_CLASSES)}


# --------------------------------------------------------------------------------------------------------------
# Hunyuan-DiT (HunyuanDiT2DModel): U-Net-like long skips between the first and second half of one block list.
# --------------------------------------------------------------------------------------------------------------

_HUNYUAN_DIT = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    num_layers=4,  # even and >= 4 so that the skip structure exists: block 0's output feeds block 3
    num_attention_heads=2,
    attention_head_dim=16,
    hidden_size=32,
    cross_attention_dim=24,
    cross_attention_dim_t5=32,  # the T5 attention pooler has 8 heads
    pooled_projection_dim=16,
    text_len=7,
    text_len_t5=5,
    learn_sigma=False,
    activation_fn="gelu-approximate",
)


def _hunyuan_dit_inputs(batch: int, gen: torch.Generator) -> dict:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    rope = get_2d_rotary_pos_embed(16, ((0, 0), (4, 4)), (4, 4))  # head_dim, crop box, 4x4 patch grid
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timestep": torch.full((batch,), 500.0),
        "encoder_hidden_states": randn(gen, batch, 7, 24),  # CLIP tokens
        "text_embedding_mask": torch.ones(batch, 7),
        "encoder_hidden_states_t5": randn(gen, batch, 5, 32),  # T5 tokens
        "text_embedding_mask_t5": torch.ones(batch, 5),
        "image_meta_size": torch.tensor([[64.0, 64.0, 64.0, 64.0, 0.0, 0.0]]).repeat(batch, 1),
        "style": torch.zeros(batch, dtype=torch.long),
        "image_rotary_emb": rope,
        "return_dict": False,
    }


def _hunyuan_dit_uncond(inputs: dict) -> dict:
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "encoder_hidden_states_t5": torch.zeros_like(inputs["encoder_hidden_states_t5"]),
    }


# --------------------------------------------------------------------------------------------------------------
# Lumina-Next (LuminaNextDiT2DModel): self-attn + gated cross-attn to the caption; complex 2-D RoPE is an input.
# Lumina counts time the other way (t=0 noise, t=1 image), so the time kwarg is 1 - t.
# --------------------------------------------------------------------------------------------------------------

_LUMINA_NEXT = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    hidden_size=32,
    num_layers=3,
    num_attention_heads=2,
    num_kv_heads=1,
    multiple_of=16,
    ffn_dim_multiplier=None,
    norm_eps=1e-5,
    learn_sigma=False,  # real checkpoints learn sigma and the pipeline keeps the first half of the channels
    qk_norm=True,
    cross_attention_dim=24,
    scaling_factor=1.0,
)


def _lumina_t(t: float, batch: int) -> torch.Tensor:
    return torch.full((batch,), 1.0 - t)


def _lumina_next_inputs(batch: int, gen: torch.Generator) -> dict:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed_lumina

    mask = torch.ones(batch, 12, dtype=torch.long)
    mask[:, 10:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timestep": _lumina_t(0.5, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "encoder_mask": mask,
        # head_dim 16; the pipeline builds a 384x384 table, 16x16 covers the 4x4 patch grid here
        "image_rotary_emb": get_2d_rotary_pos_embed_lumina(16, 16, 16),
        "cross_attention_kwargs": {},
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# Lumina-Image 2.0 (Lumina2Transformer2DModel): context_refiner (text) and noise_refiner (image) run first, then
# the joint sequence [caption | image] goes through `layers`.
# --------------------------------------------------------------------------------------------------------------

_LUMINA2 = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    hidden_size=32,
    num_layers=3,
    num_refiner_layers=2,
    num_attention_heads=2,
    num_kv_heads=1,
    multiple_of=16,
    ffn_dim_multiplier=None,
    norm_eps=1e-5,
    scaling_factor=1.0,
    axes_dim_rope=(8, 4, 4),  # sums to head_dim 16
    axes_lens=(64, 32, 32),
    cap_feat_dim=24,
)


def _lumina2_inputs(batch: int, gen: torch.Generator) -> dict:
    mask = torch.ones(batch, 12, dtype=torch.bool)
    mask[:, 10:] = False  # a padded prompt
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timestep": _lumina_t(0.5, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "encoder_attention_mask": mask,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# Z-Image (ZImageTransformer2DModel): noise_refiner (image tokens) and context_refiner (caption tokens) run first,
# then the unified [image | caption] sequence goes through `layers`. The patch embedder and final layer sit in
# ModuleDicts keyed "<patch>-<frame patch>" (here "2-1"). Each sequence is padded to a multiple of 32 tokens.
#
# ZImagePipeline passes `x` as a list of per-sample (C, F=1, H, W) latents and `cap_feats` as a list of (L, D)
# tensors, and gets a list back. The forward only iterates over them (zip / len / x[0].device), so a stacked
# (B, C, 1, H, W) tensor and a (B, L, D) tensor are the same call with a fixed buffer for the latents; the output
# stays a list, which `velocity` stacks back into (B, C, 1, H, W). Time: the pipeline passes (1000 - t) / 1000.
# --------------------------------------------------------------------------------------------------------------

_Z_IMAGE = dict(
    all_patch_size=(2,),
    all_f_patch_size=(1,),
    in_channels=4,
    dim=32,
    n_layers=3,
    n_refiner_layers=2,
    n_heads=2,
    n_kv_heads=2,
    qk_norm=True,
    cap_feat_dim=24,
    rope_theta=256.0,
    t_scale=1000.0,
    axes_dims=[8, 4, 4],  # sums to head_dim 16
    axes_lens=[128, 32, 32],
)


def _z_image_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "x": randn(gen, batch, 4, 1, 16, 16),  # 64 image tokens (one 32-token pad multiple apart from the caption)
        "t": _lumina_t(0.5, batch),
        "cap_feats": randn(gen, batch, 12, 24),  # 12 caption tokens, padded to 32 inside the model
        "return_dict": False,
    }


def _z_image_velocity(output) -> torch.Tensor:
    return torch.stack(list(output[0]), dim=0)


def _z_image_uncond(inputs: dict) -> dict:
    return {"cap_feats": torch.zeros_like(inputs["cap_feats"])}


# --------------------------------------------------------------------------------------------------------------
# OmniGen (OmniGenTransformer2DModel): a Phi-3-style decoder over [text tokens | time token | image tokens], with a
# causal mask over the text and bidirectional attention inside each image. Text is left-padded; input images of
# the edit task replace placeholder tokens inside the text. The pipeline's scheduler inverts sigmas
# (num_train_timesteps=1), so the time kwarg is 1 - t in [0, 1].
# --------------------------------------------------------------------------------------------------------------

_OMNIGEN = dict(
    hidden_size=32,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=64,
    num_layers=3,
    pad_token_id=0,
    vocab_size=100,
    in_channels=4,
    patch_size=2,
    time_step_dim=32,
    pos_embed_max_size=16,
    rope_scaling={"long_factor": [1.0 + i / 8 for i in range(8)], "short_factor": [1.0] * 8},  # head_dim // 2
)


def _omnigen_mask_and_positions(pad: int, text: int, image: int, image_spans=()) -> tuple[torch.Tensor, torch.Tensor]:
    """OmniGen's joint mask and position ids for one sample (the pipeline's collator builds the same).

    ``pad`` left-padding tokens, ``text`` real text tokens (image placeholders included), ``image`` output image
    tokens; ``image_spans`` the (start, end) of input-image placeholders, counted from the padded start.
    """
    seq = pad + text + 1 + image
    mask = torch.zeros(seq, seq)
    body = pad + text + 1  # end of the time token
    mask[pad:body, pad:body] = torch.tril(torch.ones(text + 1, text + 1))  # causal text + time token
    mask[body:, pad:] = 1.0  # output image tokens see everything that is not padding
    mask[:pad, :] = 1.0  # padding rows attend everywhere (they are never read back)
    for start, end in image_spans:
        mask[start:end, start:end] = 1.0  # bidirectional inside an input image
    positions = torch.tensor([0] * pad + list(range(text + 1 + image)), dtype=torch.long)
    return mask, positions


def _omnigen_text(gen: torch.Generator, batch: int, pad: int, text: int) -> torch.Tensor:
    ids = torch.randint(1, 100, (batch, pad + text), generator=gen)
    ids[:, :pad] = 0  # pad_token_id
    return ids


def _omnigen_inputs(batch: int, gen: torch.Generator) -> dict:
    mask, pos = _omnigen_mask_and_positions(pad=2, text=10, image=16)
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),  # 16 image tokens
        "timestep": _lumina_t(0.5, batch),
        "input_ids": _omnigen_text(gen, batch, pad=2, text=10),  # 12 text positions
        "input_img_latents": [],
        "input_image_sizes": {},
        "attention_mask": mask.expand(batch, -1, -1).clone(),
        "position_ids": pos.expand(batch, -1).clone(),
        "return_dict": False,
    }


def _omnigen_uncond(inputs: dict) -> dict:
    # The negative prompt: a shorter text, so more left padding; same total length, so the same shapes.
    batch = inputs["input_ids"].shape[0]
    gen = torch.Generator().manual_seed(123)
    mask, pos = _omnigen_mask_and_positions(pad=5, text=7, image=16)
    return {
        "input_ids": _omnigen_text(gen, batch, pad=5, text=7),
        "attention_mask": mask.expand(batch, -1, -1).clone(),
        "position_ids": pos.expand(batch, -1).clone(),
    }


# Image editing: one input image (8x8 latent -> 16 tokens) replaces placeholders at text positions 3..19.
_OMNIGEN_EDIT_SPAN = (3, 19)


def _omnigen_edit_inputs(batch: int, gen: torch.Generator) -> dict:
    start, end = _OMNIGEN_EDIT_SPAN
    mask, pos = _omnigen_mask_and_positions(pad=1, text=22, image=16, image_spans=[(start, end)])
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),
        "timestep": _lumina_t(0.5, batch),
        "input_ids": _omnigen_text(gen, batch, pad=1, text=22),
        "input_img_latents": [randn(gen, 1, 4, 8, 8) for _ in range(batch)],
        "input_image_sizes": {b: [[start, end]] for b in range(batch)},
        "attention_mask": mask.expand(batch, -1, -1).clone(),
        "position_ids": pos.expand(batch, -1).clone(),
        "return_dict": False,
    }


def _omnigen_edit_uncond(inputs: dict) -> dict:
    # The pipeline's image-CFG branch: the negative prompt with the same input image in the same place (its pure
    # uncond branch drops the image, which changes input_image_sizes, a Python dict, and so the traced code).
    ids = inputs["input_ids"].clone()
    ids[:, 1:] = (ids[:, 1:] * 7) % 99 + 1
    return {"input_ids": ids}


# --------------------------------------------------------------------------------------------------------------
# CogView3-Plus (CogView3PlusTransformer2DModel): text and image tokens are embedded together, then each block
# carries both streams (it returns (hidden_states, encoder_hidden_states)); SDXL-style size micro-conditions.
# --------------------------------------------------------------------------------------------------------------

_COGVIEW3PLUS = dict(
    patch_size=2,
    in_channels=4,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    out_channels=4,
    text_embed_dim=24,
    time_embed_dim=32,
    condition_dim=8,
    pos_embed_max_size=8,
    sample_size=8,
)


def _cogview3plus_inputs(batch: int, gen: torch.Generator) -> dict:
    size = torch.tensor([[64.0, 64.0]]).repeat(batch, 1)
    return {
        "hidden_states": randn(gen, batch, 4, 8, 8),  # 16 image tokens
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "timestep": long_timestep(0.5, batch),
        "original_size": size,
        "target_size": size.clone(),
        "crop_coords": torch.zeros(batch, 2),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# ERNIE-Image (ErnieImageTransformer2DModel): one sequence [image | text] in (S, B, H) layout (sequence first)
# through `layers`; one shared AdaLN modulation (computed once, handed to every block as a list of 6 tensors).
# The class zero-initialises adaLN_modulation[-1] and final_linear, so they are re-drawn (``ModelSpec.reinit``).
# --------------------------------------------------------------------------------------------------------------

_ERNIE_IMAGE = dict(
    hidden_size=32,
    num_attention_heads=2,
    num_layers=3,
    ffn_hidden_size=64,
    in_channels=16,
    out_channels=16,
    patch_size=1,
    text_in_dim=24,
    rope_theta=256,
    rope_axes_dim=(8, 4, 4),  # sums to head_dim 16
    eps=1e-6,
    qk_layernorm=True,
)


def _ernie_image_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "hidden_states": randn(gen, batch, 16, 4, 4),  # 16 image tokens (patch 1 over packed latents)
        "timestep": torch.full((batch,), 500.0),
        "text_bth": randn(gen, batch, 12, 24),
        "text_lens": torch.full((batch,), 10, dtype=torch.long),  # 10 valid of 12 padded text tokens
        "return_dict": False,
    }


def _ernie_image_uncond(inputs: dict) -> dict:
    # The empty negative prompt: zero features and a shorter valid length, padded to the same text length.
    return {"text_bth": torch.zeros_like(inputs["text_bth"]), "text_lens": torch.full_like(inputs["text_lens"], 3)}


# --------------------------------------------------------------------------------------------------------------
# Ideogram 4 (Ideogram4Transformer2DModel): one packed sequence [left pad | text | image] with per-token
# indicator / segment ids and 3-axis MRoPE positions. The pipeline's conditional pass runs `transformer` on the
# packed sequence; its unconditional pass runs a second model of the same class (`unconditional_transformer`) on
# the image tokens alone. Time in [0, 1], 0 = noise.
# --------------------------------------------------------------------------------------------------------------

_IDEOGRAM4 = dict(
    in_channels=8,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    intermediate_size=64,
    adaln_dim=16,
    llm_features_dim=24,
    rope_theta=10_000,
    mrope_section=(4, 2, 2),  # sums to head_dim // 2
    norm_eps=1e-5,
)
_IDEO_TEXT, _IDEO_PAD, _IDEO_GRID = 12, 2, (4, 4)


def _ideogram4_layout(batch: int, with_text: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from diffusers.models.transformers.transformer_ideogram4 import (
        IMAGE_POSITION_OFFSET,
        LLM_TOKEN_INDICATOR,
        OUTPUT_IMAGE_INDICATOR,
        SEQUENCE_PADDING_INDICATOR,
    )

    gh, gw = _IDEO_GRID
    hh, ww = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    image_pos = torch.stack([torch.zeros(gh * gw, dtype=torch.long), hh.flatten(), ww.flatten()], -1)
    image_pos = image_pos + IMAGE_POSITION_OFFSET
    if not with_text:
        n = gh * gw
        return (
            image_pos.expand(batch, -1, -1).clone(),
            torch.ones(batch, n, dtype=torch.long),
            torch.full((batch, n), OUTPUT_IMAGE_INDICATOR, dtype=torch.long),
        )
    n_text = _IDEO_TEXT - _IDEO_PAD
    text_pos = torch.arange(n_text).unsqueeze(-1).expand(-1, 3)
    positions = torch.cat([torch.zeros(_IDEO_PAD, 3, dtype=torch.long), text_pos, image_pos])
    segments = torch.cat([torch.full((_IDEO_PAD,), SEQUENCE_PADDING_INDICATOR), torch.ones(n_text + gh * gw)])
    indicator = torch.cat(
        [
            torch.zeros(_IDEO_PAD),
            torch.full((n_text,), LLM_TOKEN_INDICATOR),
            torch.full((gh * gw,), OUTPUT_IMAGE_INDICATOR),
        ]
    )
    return (
        positions.expand(batch, -1, -1).clone(),
        segments.long().expand(batch, -1).clone(),
        indicator.long().expand(batch, -1).clone(),
    )


def _ideogram4_inputs(batch: int, gen: torch.Generator) -> dict:
    n_img = _IDEO_GRID[0] * _IDEO_GRID[1]
    latents = torch.cat([torch.zeros(batch, _IDEO_TEXT, 8), randn(gen, batch, n_img, 8)], dim=1)
    text = torch.cat([torch.zeros(batch, _IDEO_PAD, 24), randn(gen, batch, _IDEO_TEXT - _IDEO_PAD, 24)], dim=1)
    features = torch.cat([text, torch.zeros(batch, n_img, 24)], dim=1)
    positions, segments, indicator = _ideogram4_layout(batch, with_text=True)
    return {
        # The packed sequence: text positions carry zeros (the model masks them out of hidden_states), image
        # positions the noisy latent tokens. The prediction is only meaningful at image positions.
        "hidden_states": latents,
        "timestep": _lumina_t(0.5, batch),
        "encoder_hidden_states": features,
        "position_ids": positions,
        "segment_ids": segments,
        "indicator": indicator,
        "return_dict": False,
    }


def _ideogram4_image_only_inputs(batch: int, gen: torch.Generator) -> dict:
    n_img = _IDEO_GRID[0] * _IDEO_GRID[1]
    positions, segments, indicator = _ideogram4_layout(batch, with_text=False)
    return {
        "hidden_states": randn(gen, batch, n_img, 8),
        "timestep": _lumina_t(0.5, batch),
        "encoder_hidden_states": torch.zeros(batch, n_img, 24),  # the pipeline's zeroed text features
        "position_ids": positions,
        "segment_ids": segments,
        "indicator": indicator,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# Cosmos3-Omni (Cosmos3OmniTransformer): a mixture-of-transformers decoder with no batch dimension. One packed
# sequence: a causal "understanding" prefix (text, und_len tokens) and a "generation" part (vision tokens); every
# layer carries both (returns (und_seq, gen_seq)), with separate weights per pathway. The pipeline passes
# vision_tokens=[latents] with latents (1, C, T, H, W); the forward only iterates over it, so a (N, C, T, H, W)
# tensor is the same call (N items packed into the one sequence). The output is a list of (1, C, T, H, W)
# predictions, zero at conditioning frames. Time: vision_timesteps holds one value per noisy vision token.
# --------------------------------------------------------------------------------------------------------------

_COSMOS3 = dict(
    head_dim=16,
    hidden_size=32,
    intermediate_size=64,
    latent_channel=4,
    latent_patch_size=2,
    patch_latent_dim=16,  # patch^2 * latent_channel
    num_attention_heads=2,
    num_hidden_layers=3,
    num_key_value_heads=1,
    rms_norm_eps=1e-5,
    rope_axes_dim=[4, 2, 2],  # sums to head_dim // 2
    rope_theta=1e6,
    vocab_size=64,
)
_COSMOS3_TEXT = 12
_COSMOS3_MARGIN = 15000  # unified_3d_mrope_temporal_modality_margin


def _cosmos3_make_inputs(frames: int, cond_frames: tuple[int, ...]):
    gh = gw = 4  # an 8x8 latent in 2x2 patches
    per_frame = gh * gw
    noisy = [f for f in range(frames) if f not in cond_frames]

    def make_inputs(batch: int, gen: torch.Generator) -> dict:
        # `batch` vision items packed one after the other behind the text (the model has no batch axis).
        und = _COSMOS3_TEXT
        n_vis = frames * per_frame
        total = und + batch * n_vis
        text_pos = torch.arange(und, dtype=torch.float32).expand(3, -1)
        t_idx = torch.arange(frames).repeat_interleave(per_frame) + und + _COSMOS3_MARGIN
        h_idx = torch.arange(gh).repeat_interleave(gw).repeat(frames)
        w_idx = torch.arange(gw).repeat(gh * frames)
        vis_pos = torch.stack([t_idx, h_idx, w_idx]).float()
        loss_idx = [und + b * n_vis + f * per_frame + k for b in range(batch) for f in noisy for k in range(per_frame)]
        return {
            "input_ids": torch.randint(1, 64, (und,), generator=gen),
            "text_indexes": torch.arange(und),
            "position_ids": torch.cat([text_pos] + [vis_pos] * batch, dim=1),
            "und_len": und,
            "sequence_length": total,
            "vision_tokens": randn(gen, batch, 4, frames, 8, 8),
            "vision_token_shapes": [(frames, gh, gw)] * batch,
            "vision_sequence_indexes": torch.arange(und, total),
            "vision_mse_loss_indexes": torch.tensor(loss_idx, dtype=torch.long),
            "vision_timesteps": torch.full((batch * len(noisy) * per_frame,), 500.0),
            "vision_noisy_frame_indexes": [torch.tensor(noisy, dtype=torch.long)] * batch,
            "return_dict": False,
        }

    def make_timestep(t: float, batch: int) -> torch.Tensor:
        return torch.full((batch * len(noisy) * per_frame,), t * 1000.0)

    return make_inputs, make_timestep


def _cosmos3_uncond(inputs: dict) -> dict:
    # The negative prompt, tokenised to the same length (und_len and sequence_length are Python ints).
    return {"input_ids": (inputs["input_ids"] * 5 + 3) % 63 + 1}


def _cosmos3_velocity(output) -> torch.Tensor:
    return torch.cat(list(output[0]), dim=0)


_COSMOS3_T2I = _cosmos3_make_inputs(frames=1, cond_frames=())
_COSMOS3_V2W = _cosmos3_make_inputs(frames=2, cond_frames=(0,))


# --------------------------------------------------------------------------------------------------------------
# Transformer2DModel, stand-alone. (1) Continuous input (GroupNorm + 1x1 conv in, blocks, 1x1 conv out, plus the
# input as a residual) with AdaLayerNorm ("ada_norm"): a timestep table of num_embeds_ada_norm entries, so the
# time is an integer step. (2) The patched AdaLN-single configuration that PixArt pipelines loaded as
# Transformer2DModel before PixArtTransformer2DModel existed (built directly, it stays a Transformer2DModel).
# --------------------------------------------------------------------------------------------------------------

_T2D_CONTINUOUS = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    num_layers=3,
    norm_num_groups=4,
    cross_attention_dim=24,
    attention_bias=True,
    activation_fn="geglu",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm",
)


def _scalar_long_t(t: float, batch: int) -> torch.Tensor:
    """One integer step for the whole batch, a 0-d tensor: AdaLayerNorm ("ada_norm") splits its embedding along
    dim 0 into scale and shift, so it only takes a single (unbatched) timestep."""
    return torch.tensor(int(round(t * 999)), dtype=torch.long)


def _t2d_continuous_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "hidden_states": randn(gen, batch, 4, 4, 4),  # 16 tokens, one per latent pixel
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "timestep": _scalar_long_t(0.5, batch),
        "return_dict": False,
    }


_T2D_PATCHED = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    num_layers=3,
    patch_size=2,
    sample_size=8,
    cross_attention_dim=32,
    caption_channels=24,
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    use_additional_conditions=False,
)


# --------------------------------------------------------------------------------------------------------------
# PriorTransformer, a denoiser of a CLIP image embedding (the latent is `hidden_states` itself).
# Kandinsky 2.x / Karlo prior: sequence [text tokens | text embedding | time | noisy embedding | prd query],
# causal mask, the prediction read at the prd token. Shap-E prior: the latent is (B, num_embeddings, dim), no
# text tokens; it predicts mean and variance (clip_embed_dim = 2 * dim), `velocity` keeps the mean half.
# positional_embedding and prd_embedding start at zero in __init__ and are re-drawn.
# --------------------------------------------------------------------------------------------------------------

_PRIOR_KANDINSKY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=3,
    embedding_dim=24,
    num_embeddings=12,
    additional_embeddings=4,
)


def _prior_kandinsky_inputs(batch: int, gen: torch.Generator) -> dict:
    mask = torch.ones(batch, 12, dtype=torch.bool)
    mask[:, 9:] = False
    return {
        "hidden_states": randn(gen, batch, 24),
        "timestep": long_timestep(0.5, batch),
        "proj_embedding": randn(gen, batch, 24),
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "attention_mask": mask,
        "return_dict": False,
    }


def _prior_kandinsky_uncond(inputs: dict) -> dict:
    return {
        "proj_embedding": torch.zeros_like(inputs["proj_embedding"]),
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
    }


_PRIOR_SHAP_E = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    embedding_dim=16,
    num_embeddings=16,
    embedding_proj_dim=24,
    time_embed_dim=64,
    num_layers=3,
    clip_embed_dim=32,  # 2 * embedding_dim: mean and variance
    additional_embeddings=0,
    time_embed_act_fn="gelu",
    norm_in_type="layer",
    encoder_hid_proj_type=None,
    added_emb_type=None,
)


def _prior_shap_e_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "hidden_states": randn(gen, batch, 16, 16),  # (B, num_embeddings, embedding_dim)
        "timestep": long_timestep(0.5, batch),
        "proj_embedding": randn(gen, batch, 24),  # the CLIP text embedding
        "return_dict": False,
    }


def _prior_shap_e_uncond(inputs: dict) -> dict:
    return {"proj_embedding": torch.zeros_like(inputs["proj_embedding"])}  # ShapEPipeline's negative embedding


def _prior_shap_e_velocity(output) -> torch.Tensor:
    return output[0][..., :16]  # drop the predicted variance half, as the pipeline does


# --------------------------------------------------------------------------------------------------------------
# Stable Audio Open (StableAudioDiTModel): (B, C, T) latents; one global token (duration + time) is prepended;
# cross-attention to [text | seconds_start | seconds_end] tokens; RoPE over the audio + global tokens is an input.
# Time: the EDM scheduler's preconditioned sigma, in [0, 1).
# --------------------------------------------------------------------------------------------------------------

_STABLE_AUDIO = dict(
    sample_size=16,
    in_channels=8,
    num_layers=3,
    attention_head_dim=16,
    num_attention_heads=2,
    num_key_value_attention_heads=1,
    out_channels=8,
    cross_attention_dim=32,
    time_proj_dim=16,
    global_states_input_dim=24,
    cross_attention_input_dim=24,
)


def _stable_audio_inputs(batch: int, gen: torch.Generator) -> dict:
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    rope = get_1d_rotary_pos_embed(8, 16 + 1, use_real=True, repeat_interleave_real=False)  # head_dim // 2
    return {
        "hidden_states": randn(gen, batch, 8, 16),  # 16 audio frames
        "timestep": unit_timestep(0.5, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 24),  # 10 text tokens + 2 duration tokens
        "global_hidden_states": randn(gen, batch, 1, 24),
        "rotary_embedding": rope,
        "return_dict": False,
    }


def _stable_audio_uncond(inputs: dict) -> dict:
    # The empty negative prompt: zero text tokens, the two duration tokens kept.
    context = inputs["encoder_hidden_states"].clone()
    context[:, :-2] = 0.0
    return {"encoder_hidden_states": context}


# --------------------------------------------------------------------------------------------------------------
# Stable Audio 3 (StableAudio3DiTModel): memory tokens are prepended to the audio tokens; a global modulation
# (duration + time) plus a per-block bias; cross-attention to the text/duration context. Zero-initialised in
# __init__ (re-drawn here): the residual pre/post 1x1 convs, and the inpainting projection to_local_embed.
# --------------------------------------------------------------------------------------------------------------

_STABLE_AUDIO3 = dict(
    io_channels=8,
    patch_size=1,
    embed_dim=32,
    depth=3,
    num_heads=2,
    cond_token_dim=24,
    global_cond_dim=16,
    local_add_cond_dim=9,  # io_channels + 1: the known latents and a keep-mask channel
    timestep_features_dim=16,
    ff_mult=2.0,
    num_memory_tokens=4,
    use_differential_attention=True,  # as the released SA3 Medium
)


def _stable_audio3_inputs(batch: int, gen: torch.Generator) -> dict:
    mask = torch.ones(batch, 12, dtype=torch.bool)
    mask[:, 10:] = False
    return {
        "hidden_states": randn(gen, batch, 8, 16),
        "timestep": unit_timestep(0.5, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "global_hidden_states": randn(gen, batch, 16),
        "encoder_attention_mask": mask,
        "return_dict": False,
    }


def _stable_audio3_uncond(inputs: dict) -> dict:
    mask = torch.zeros_like(inputs["encoder_attention_mask"])
    mask[:, :2] = True  # a short negative prompt: more padding, replaced by the learned padding embedding
    return {"encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]), "encoder_attention_mask": mask}


def _stable_audio3_inpaint_inputs(batch: int, gen: torch.Generator) -> dict:
    inputs = _stable_audio3_inputs(batch, gen)
    # local_add_cond: the known audio latents (zero where regenerated) and a keep-mask channel, per latent frame.
    keep = torch.zeros(batch, 1, 16)
    keep[..., :6] = 1.0  # keep the first 6 frames, regenerate the rest
    known = randn(gen, batch, 8, 16) * keep
    inputs["local_add_cond"] = torch.cat([known, keep], dim=1)
    return inputs


# --------------------------------------------------------------------------------------------------------------
# ACE-Step 1.5 (AceStepTransformer1DModel): (B, T, C) latents concatenated with context latents, patchified
# by a strided conv; layers alternate sliding-window and full self-attention, plus cross-attention to the
# condition encoder's output. Two times: `timestep` t and `timestep_r` (the pipeline passes r = t, both in [0, 1],
# 1 = noise). The spec drives only `timestep`; timestep_r stays at the value below.
# --------------------------------------------------------------------------------------------------------------

_ACE_STEP = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    in_channels=24,  # 3 * audio_acoustic_hidden_dim: latents + 2x context latents
    audio_acoustic_hidden_dim=8,
    patch_size=2,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    sliding_window=4,
)


def _ace_step_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "hidden_states": randn(gen, batch, 32, 8),  # 32 frames -> 16 tokens after the patch conv
        "timestep": unit_timestep(0.5, batch),
        "timestep_r": unit_timestep(0.5, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 32),
        "context_latents": randn(gen, batch, 32, 16),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# LongCat-AudioDiT (LongCatAudioDiTTransformer): (B, T, C) latents; global AdaLN (time + mean text embedding);
# self-attention + cross-attention per block; a long skip adds the embedded input to the blocks' output. The
# class zero-initialises adaln_global_mlp, norm_out.linear and proj_out (re-drawn here).
# --------------------------------------------------------------------------------------------------------------

_LONGCAT_AUDIO = dict(
    dit_dim=32,
    dit_depth=3,
    dit_heads=2,
    dit_text_dim=24,
    latent_dim=8,
    ff_mult=2.0,
)


def _longcat_audio_inputs(batch: int, gen: torch.Generator) -> dict:
    text_mask = torch.ones(batch, 12, dtype=torch.bool)
    text_mask[:, 10:] = False
    return {
        "hidden_states": randn(gen, batch, 16, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 24),
        "encoder_attention_mask": text_mask,
        "timestep": unit_timestep(0.5, batch),
        "attention_mask": torch.ones(batch, 16, dtype=torch.bool),
        "latent_cond": torch.zeros(batch, 16, 8),  # the text-to-audio pipeline passes zeros
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------
# MiniMax Music 3 (MiniMaxMusic3Transformer1DModel): (B, C, T) latents, condition frames aligned one per latent
# frame (so text and latent token counts are equal by design); the time embedding is prepended as one token.
# Time in [0, 1], 0 = noise.
# --------------------------------------------------------------------------------------------------------------

_MINIMAX_MUSIC3 = dict(
    in_channels=8,
    condition_dim=24,
    num_layers=3,
    num_attention_heads=2,
    attention_head_dim=16,
    ff_inner_dim=64,
    rotary_dim=8,
    fourier_embedding_dim=16,
)


def _minimax_music3_inputs(batch: int, gen: torch.Generator) -> dict:
    return {
        "hidden_states": randn(gen, batch, 8, 16),
        "timestep": _lumina_t(0.5, batch),
        "encoder_hidden_states": randn(gen, batch, 16, 24),
        "return_dict": False,
    }


MODELS: list[ModelSpec] = [
    ModelSpec("pixart_sigma", "PixArtTransformer2DModel", _PIXART_SIGMA, _pixart_sigma_inputs,
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("pixart_alpha", "PixArtTransformer2DModel", _PIXART_ALPHA, _pixart_alpha_inputs,
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("sana", "SanaTransformer2DModel", _SANA, _sana_inputs,
        sequence=('transformer_blocks',),
        carries={'SanaTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "sana_sprint",
        "SanaTransformer2DModel",
        _SANA_SPRINT,
        _sana_sprint_inputs,
        make_timestep=unit_timestep,
        uncond=None,  # guidance is embedded (guidance kwarg); the Sprint pipeline runs no CFG,
        sequence=('transformer_blocks',),
        carries={'SanaTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("dit", "DiTTransformer2DModel", _DIT, _dit_inputs, make_timestep=long_timestep, uncond=_dit_uncond,
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("hunyuan_dit", "HunyuanDiT2DModel", _HUNYUAN_DIT, _hunyuan_dit_inputs, uncond=_hunyuan_dit_uncond,
        sequence=('blocks',),
        carries={'HunyuanDiTBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "lumina_next",
        "LuminaNextDiT2DModel",
        _LUMINA_NEXT,
        _lumina_next_inputs,
        make_timestep=_lumina_t,
        # the cross-attention gates start at 0 (tanh(0) = 0 shuts the text path off) and pad_token is torch.empty
        reinit=("layers.*.gate", "pad_token"),
        sequence=('layers',),
        carries={'LuminaNextDiTBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("lumina2", "Lumina2Transformer2DModel", _LUMINA2, _lumina2_inputs, make_timestep=_lumina_t,
        sequence=('layers',),
        carries={'Lumina2TransformerBlock': ('hidden_states',)},
        fullgraph=False,
        hook=True,
    ),
    ModelSpec(
        "z_image",
        "ZImageTransformer2DModel",
        _Z_IMAGE,
        _z_image_inputs,
        latent="x",
        timestep="t",
        make_timestep=_lumina_t,
        uncond=_z_image_uncond,
        velocity=_z_image_velocity,
        prepare=fill_rope_table,
        sequence=('layers',),
        carries={'ZImageTransformerBlock': ('x',)},
        hook_note='crashes: asks each block for `hidden_states`; its stream is `x`',
    ),
    ModelSpec(
        "omnigen",
        "OmniGenTransformer2DModel",
        _OMNIGEN,
        _omnigen_inputs,
        make_timestep=_lumina_t,
        uncond=_omnigen_uncond,
        sequence=('layers',),
        carries={'OmniGenBlock': ('hidden_states',)},
        fullgraph=False,
        hook=True,
    ),
    ModelSpec(
        "omnigen_edit",
        "OmniGenTransformer2DModel",
        _OMNIGEN,
        _omnigen_edit_inputs,
        make_timestep=_lumina_t,
        uncond=_omnigen_edit_uncond,
        sequence=('layers',),
        carries={'OmniGenBlock': ('hidden_states',)},
        fullgraph=False,
        hook=True,
    ),
    ModelSpec(
        "cogview3plus", "CogView3PlusTransformer2DModel", _COGVIEW3PLUS, _cogview3plus_inputs, make_timestep=long_timestep,
        sequence=('transformer_blocks',),
        carries={'CogView3PlusTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec(
        "ernie_image",
        "ErnieImageTransformer2DModel",
        _ERNIE_IMAGE,
        _ernie_image_inputs,
        uncond=_ernie_image_uncond,
        reinit=("adaLN_modulation.*", "final_linear.*"),
        sequence=('layers',),
        carries={'ErnieImageSharedAdaLNBlock': ('x',)},
        hook_note='crashes: asks each block for `hidden_states`; its stream is `x`',
    ),
    ModelSpec("ideogram4", "Ideogram4Transformer2DModel", _IDEOGRAM4, _ideogram4_inputs, make_timestep=_lumina_t,
        sequence=('layers',),
        carries={'Ideogram4TransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "ideogram4_uncond_model",
        "Ideogram4Transformer2DModel",
        _IDEOGRAM4,
        _ideogram4_image_only_inputs,
        make_timestep=_lumina_t,
        uncond=None,  # this call IS the pipeline's unconditional branch (image tokens only, no text),
        sequence=('layers',),
        carries={'Ideogram4TransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "cosmos3_t2i",
        "Cosmos3OmniTransformer",
        _COSMOS3,
        _COSMOS3_T2I[0],
        latent="vision_tokens",
        timestep="vision_timesteps",
        make_timestep=_COSMOS3_T2I[1],
        uncond=_cosmos3_uncond,
        velocity=_cosmos3_velocity,
        sequence=('layers',),
        carries={'Cosmos3VLTextMoTDecoderLayer': ('und_seq', 'gen_seq')},
        hidden='gen_seq',
        hook_note='crashes: asks each block for `hidden_states`; its stream is `gen_seq`',
    ),
    ModelSpec(
        "cosmos3_video2world",
        "Cosmos3OmniTransformer",
        _COSMOS3,
        _COSMOS3_V2W[0],
        latent="vision_tokens",
        timestep="vision_timesteps",
        make_timestep=_COSMOS3_V2W[1],
        uncond=_cosmos3_uncond,
        velocity=_cosmos3_velocity,
        sequence=('layers',),
        carries={'Cosmos3VLTextMoTDecoderLayer': ('und_seq', 'gen_seq')},
        hidden='gen_seq',
        hook_note='crashes: asks each block for `hidden_states`; its stream is `gen_seq`',
    ),
    ModelSpec(
        "transformer2d_continuous",
        "Transformer2DModel",
        _T2D_CONTINUOUS,
        _t2d_continuous_inputs,
        make_timestep=_scalar_long_t,
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("transformer2d_pixart_legacy", "Transformer2DModel", _T2D_PATCHED, _pixart_sigma_inputs,
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "prior_kandinsky",
        "PriorTransformer",
        _PRIOR_KANDINSKY,
        _prior_kandinsky_inputs,
        make_timestep=long_timestep,
        uncond=_prior_kandinsky_uncond,
        reinit=("positional_embedding", "prd_embedding"),
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "prior_shap_e",
        "PriorTransformer",
        _PRIOR_SHAP_E,
        _prior_shap_e_inputs,
        make_timestep=long_timestep,
        uncond=_prior_shap_e_uncond,
        velocity=_prior_shap_e_velocity,
        reinit=("positional_embedding",),
        sequence=('transformer_blocks',),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "stable_audio",
        "StableAudioDiTModel",
        _STABLE_AUDIO,
        _stable_audio_inputs,
        make_timestep=unit_timestep,
        uncond=_stable_audio_uncond,
        sequence=('transformer_blocks',),
        carries={'StableAudioDiTBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "stable_audio3",
        "StableAudio3DiTModel",
        _STABLE_AUDIO3,
        _stable_audio3_inputs,
        make_timestep=unit_timestep,
        uncond=_stable_audio3_uncond,
        reinit=("preprocess_conv.*", "postprocess_conv.*", "prompt_padding_embedding"),
        sequence=('transformer_blocks',),
        carries={'StableAudio3DiTBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "stable_audio3_inpaint",
        "StableAudio3DiTModel",
        _STABLE_AUDIO3,
        _stable_audio3_inpaint_inputs,
        make_timestep=unit_timestep,
        uncond=None,  # StableAudio3InpaintPipeline runs no CFG
        reinit=(
            "preprocess_conv.*",
            "postprocess_conv.*",
            "prompt_padding_embedding",
            "transformer_blocks.*.to_local_embed.2.*",
        ),
        sequence=('transformer_blocks',),
        carries={'StableAudio3DiTBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("ace_step", "AceStepTransformer1DModel", _ACE_STEP, _ace_step_inputs, make_timestep=unit_timestep,
        sequence=('layers',),
        carries={'AceStepTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "longcat_audio",
        "LongCatAudioDiTTransformer",
        _LONGCAT_AUDIO,
        _longcat_audio_inputs,
        make_timestep=unit_timestep,
        reinit=("adaln_global_mlp.*", "norm_out.linear.*", "proj_out.*"),
        sequence=('blocks',),
        carries={'AudioDiTBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "minimax_music3",
        "MiniMaxMusic3Transformer1DModel",
        _MINIMAX_MUSIC3,
        _minimax_music3_inputs,
        make_timestep=_lumina_t,
        sequence=('transformer_blocks',),
        carries={'MiniMaxMusic3TransformerBlock': ('hidden_states',)},
        hook=True,
    ),
]
