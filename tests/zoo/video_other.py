"""Tiny video (and video-like) diffusers transformers: CogVideoX family, Allegro, Latte, Mochi, LTX-2, HunyuanVideo
1.5 / Framepack / I2V, Cosmos, EasyAnimate, Sana-Video / Sana-WM, Motif-Video, JoyImage-Edit.

Configs follow the spirit of diffusers' ``tests/models/transformers/`` (a few blocks, widths of 32-64, one or two
heads). Where a real pipeline hands the transformer precomputed positional tables (CogVideoX rotary, Allegro rotary)
the inputs build them the same way with diffusers' own helpers, so that the model runs the path a pipeline runs.
"""

from __future__ import annotations

import torch

from .spec import ModelSpec, long_timestep, unit_timestep, randn


# ----------------------------------------------------------------------------------------------------- CogVideoX
# hidden_states is (batch, frames, channels, height, width). 2 latent frames of 8x8 at patch 2 -> 32 video tokens;
# 12 text tokens. CogVideoX 1.0 (2B-style) adds sincos positions inside the patch embedding.
_COGVIDEOX = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    time_embed_dim=16,
    text_embed_dim=16,
    num_layers=3,
    sample_width=8,
    sample_height=8,
    sample_frames=5,  # (5 - 1) // 4 + 1 = 2 latent frames
    patch_size=2,
    patch_size_t=None,
    temporal_compression_ratio=4,
    max_text_seq_length=12,
)


def _cogvideox_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 2, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": long_timestep(1.0, batch),
        "return_dict": False,
    }


def _cog_rotary(config, frames, height, width, slice_grid):
    """The (cos, sin) table CogVideoX pipelines compute in ``_prepare_rotary_positional_embeddings``."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    p, p_t = config["patch_size"], config.get("patch_size_t")
    gh, gw = height // p, width // p
    base_w, base_h = config["sample_width"] // p, config["sample_height"] // p
    if not slice_grid:  # CogVideoX 1.0 / ConsisID: crop region of the base grid
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        crops = get_resize_crop_region_for_grid((gh, gw), base_w, base_h)
        return get_3d_rotary_pos_embed(
            embed_dim=config["attention_head_dim"], crops_coords=crops, grid_size=(gh, gw), temporal_size=frames
        )
    return get_3d_rotary_pos_embed(
        embed_dim=config["attention_head_dim"],
        crops_coords=None,
        grid_size=(gh, gw),
        temporal_size=(frames + p_t - 1) // p_t,
        grid_type="slice",
        max_size=(base_h, base_w),
    )


# CogVideoX 1.5: temporal patching (patch_size_t=2) and rotary positions passed in by the pipeline (no sincos table).
# 4 latent frames -> 2 temporal patches x 4 x 4 = 32 video tokens.
_COGVIDEOX15 = dict(_COGVIDEOX, patch_size_t=2, use_rotary_positional_embeddings=True, sample_frames=13)


def _cogvideox15_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": long_timestep(1.0, batch),
        "image_rotary_emb": _cog_rotary(_COGVIDEOX15, 4, 8, 8, slice_grid=True),
        "return_dict": False,
    }


# ConsisID: CogVideoX-5B-I2V-like body (rotary, 1.0-style grid) plus the identity branch: a LocalFacialExtractor
# (its own `layers` list) turns id_cond + multi-scale ViT features into face tokens, and one PerceiverCrossAttention
# per `cross_attn_interval` main blocks adds them to hidden_states right after that block (in the model's forward,
# outside the block). The real model takes the image latents concatenated on channels (in 2C, out C); here in == out
# so the prediction matches the latents.
_CONSISID = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    time_embed_dim=16,
    text_embed_dim=16,
    num_layers=4,
    sample_width=8,
    sample_height=8,
    sample_frames=5,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=12,
    use_rotary_positional_embeddings=True,
    is_train_face=True,
    is_kps=False,
    cross_attn_interval=2,  # as released: a perceiver cross-attention after blocks 0 and 2
    cross_attn_dim_head=8,
    cross_attn_num_heads=1,
    LFE_id_dim=8,
    LFE_vit_dim=8,
    LFE_depth=4,
    LFE_dim_head=4,
    LFE_num_heads=2,
    LFE_num_id_token=2,
    LFE_num_querie=4,
    LFE_output_dim=21,  # must equal int(inner_dim / 3 * 2), the perceiver cross-attention's kv width
    LFE_ff_mult=1,
    LFE_num_scale=2,
)


def _consisid_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 2, 4, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": long_timestep(1.0, batch),
        "image_rotary_emb": _cog_rotary(_CONSISID, 2, 8, 8, slice_grid=False),
        "id_cond": randn(gen, batch, 8),
        "id_vit_hidden": [randn(gen, batch, 5, 8) for _ in range(2)],
        "return_dict": False,
    }


# ------------------------------------------------------------------------------------------------------- Allegro
# hidden_states (batch, channels, frames, height, width); 2 frames of 8x8 at patch 2 -> 32 tokens; 12 text tokens
# with a padding mask; rotary tables (frequencies + integer grid positions) built as AllegroPipeline does.
_ALLEGRO = dict(
    num_attention_heads=2,
    attention_head_dim=24,  # the rotary table splits a head in 3 equal even parts

    in_channels=4,
    out_channels=4,
    num_layers=3,
    cross_attention_dim=48,
    sample_width=8,
    sample_height=8,
    sample_frames=2,
    caption_channels=16,
)


def _allegro_rotary(frames, gh, gw, head_dim):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro

    freqs_t, freqs_h, freqs_w, grid_t, grid_h, grid_w = get_3d_rotary_pos_embed_allegro(
        embed_dim=head_dim,
        crops_coords=((0, 0), (gh, gw)),
        grid_size=(gh, gw),
        temporal_size=frames,
        interpolation_scale=(2.2, 2.0, 2.0),
    )
    pos = torch.cartesian_prod(grid_t.long(), grid_h.long(), grid_w.long())
    pos = pos.reshape(-1, 3).transpose(0, 1).reshape(3, 1, -1).contiguous()
    return (freqs_t, freqs_h, freqs_w), tuple(pos)


def _allegro_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0  # prompt padding
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": long_timestep(1.0, batch),
        "encoder_attention_mask": mask,
        "image_rotary_emb": _allegro_rotary(2, 4, 4, 24),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------- Latte
# Spatial blocks see (batch*frames, 16 tokens); temporal blocks see (batch*16, frames). video_length must equal the
# number of frames (a learned temporal position table is added before the first temporal block).
_LATTE = dict(
    sample_size=8,
    num_layers=2,
    patch_size=2,
    attention_head_dim=16,
    num_attention_heads=2,
    caption_channels=16,
    in_channels=4,
    cross_attention_dim=32,
    out_channels=4,  # real Latte learns sigma (8 channels, the pipeline keeps the first 4)
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    video_length=3,
)


def _latte_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 3, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": long_timestep(1.0, batch),
        "enable_temporal_attentions": True,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------- Mochi
# 3 blocks, the last one context_pre_only (it hands encoder_hidden_states back unchanged). 2 frames of 8x8 at patch 2
# -> 32 tokens; 12 text tokens, the last 3 padding. MochiAttnProcessor2_0 drops the padded text tokens per sample with
# torch.nonzero (an unbacked length inside attention; F.pad restores the static length, so the block outputs keep
# static shapes). MochiRoPE._create_rope wraps its einsum in `torch.autocast(device, torch.float32)`
# (transformer_mochi.py:286), run once before the blocks: the graph holds _enter_autocast/_exit_autocast nodes there.
_MOCHI = dict(
    patch_size=2,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=3,
    pooled_projection_dim=16,
    in_channels=4,
    out_channels=None,
    qk_norm="rms_norm",
    text_embed_dim=16,
    time_embed_dim=8,
    activation_fn="swiglu",
    max_sequence_length=12,
)


def _mochi_inputs(batch, gen):
    mask = torch.ones(batch, 12, dtype=torch.bool)
    mask[:, 9:] = False
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": torch.full((batch,), 0.0),
        "encoder_attention_mask": mask,
        "return_dict": False,
    }


def _mochi_uncond(inputs):
    # An empty negative prompt: zero embeddings and only the first 2 tokens valid (a different valid count).
    mask = torch.zeros_like(inputs["encoder_attention_mask"])
    mask[:, :2] = True
    return {"encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]), "encoder_attention_mask": mask}


# --------------------------------------------------------------------------------------------------------- LTX-2
# Audio + video in one model: every block takes hidden_states (video) and audio_hidden_states plus both text
# streams, cross-attends between video and audio, and returns (hidden_states, audio_hidden_states); the text streams
# are only read. The model returns (video_velocity, audio_velocity). Video latents come patchified,
# (batch, frames*height*width, channels): 2 frames of 4x4 -> 32 tokens; audio latents (batch, 10 audio frames,
# channels*mel bins). 12 text tokens per modality with a padding mask. The positions are built inside the model from
# the integer sizes (the pipeline precomputes the same coords once). LTX-2.0 layout (prompt embeddings projected in
# the model, no prompt AdaLN); LTX-2.3 (cross_attn_mod, gated attention, a per-step `sigma` input besides
# `timestep`) is not covered here.
_LTX2 = dict(
    in_channels=4,
    out_channels=4,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=2,
    attention_head_dim=16,
    cross_attention_dim=32,
    audio_in_channels=4,
    audio_out_channels=4,
    audio_num_attention_heads=2,
    audio_attention_head_dim=8,
    audio_cross_attention_dim=16,
    num_layers=3,
    qk_norm="rms_norm_across_heads",
    caption_channels=16,
    rope_double_precision=False,
)


def _ltx2_inputs(batch, gen):
    mask = torch.ones(batch, 12, dtype=torch.bool)
    mask[:, 10:] = False
    return {
        "hidden_states": randn(gen, batch, 2 * 4 * 4, 4),
        "audio_hidden_states": randn(gen, batch, 10, 4),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "audio_encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_attention_mask": mask,
        "audio_encoder_attention_mask": mask.clone(),
        "num_frames": 2,
        "height": 4,
        "width": 4,
        "fps": 24.0,
        "audio_num_frames": 10,
        "return_dict": False,
    }


def _ltx2_uncond(inputs):
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "audio_encoder_hidden_states": torch.zeros_like(inputs["audio_encoder_hidden_states"]),
    }


# ---------------------------------------------------------------------------------------------- HunyuanVideo 1.5
# 2 latent frames of 4x4 at patch 1 -> 32 tokens. Three condition streams
# are merged into one text stream inside the model (Qwen text 12 tokens, ByT5 glyph text 6 tokens, SigLIP image 4
# tokens, all-zero image embeds meaning text-to-video), valid tokens first. The real model takes
# [latents, cond latents, mask] on channels (2C+1 in, C out); here in == out as in the diffusers test.
_HV15 = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_refiner_layers=1,
    mlp_ratio=2.0,
    patch_size=1,
    patch_size_t=1,
    text_embed_dim=16,
    text_embed_2_dim=8,
    image_embed_dim=12,
    rope_axes_dim=(4, 6, 6),
    target_size=16,
    task_type="t2v",
)


def _hv15_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    mask_2 = torch.ones(batch, 6)
    mask_2[:, 4:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 4, 4),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "encoder_attention_mask": mask,
        "encoder_hidden_states_2": randn(gen, batch, 6, 8),
        "encoder_attention_mask_2": mask_2,
        "image_embeds": torch.zeros(batch, 4, 12),  # text-to-video: the pipeline passes zeros
        "return_dict": False,
    }


def _hv15_uncond(inputs):
    # The negative prompt: zero embeddings with fewer valid tokens in both text encoders.
    mask = torch.zeros_like(inputs["encoder_attention_mask"])
    mask[:, :3] = 1
    mask_2 = torch.zeros_like(inputs["encoder_attention_mask_2"])
    mask_2[:, :1] = 1
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "encoder_attention_mask": mask,
        "encoder_hidden_states_2": torch.zeros_like(inputs["encoder_hidden_states_2"]),
        "encoder_attention_mask_2": mask_2,
    }


# ------------------------------------------------------------------------------------------ HunyuanVideo Framepack
# Image-to-video by sections: the noisy window (2 frames of 8x8, patch 2 -> 32 tokens) is packed after clean history
# latents embedded at 1x (2 frames -> 32 tokens), 2x (2 frames -> 4 tokens) and 4x (4 frames -> 1 token), and the
# text (12 tokens, 3 padding) follows 5 SigLIP image tokens. Frame indices as the pipeline's vanilla sampling splits
# them: prefix 0, 4x history 1-4, 2x history 5-6, 1x history 7, window 8-9. With batch 1 the forward cuts the text
# stream to its valid length, `encoder_hidden_states[:, :effective_condition_sequence_length[0]]`
# (transformer_hunyuan_video_framepack.py:332): dynamo traces it as .item() -> an unbacked length, so inside the
# graph every block's encoder_hidden_states is (1, u, D) (14 tokens for cond, 7 for uncond here). The image stream
# carries 69 tokens (37 history + 32 noisy); only the last 32 are projected out.
_FRAMEPACK = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_single_layers=2,
    num_refiner_layers=1,
    patch_size=2,
    patch_size_t=1,
    guidance_embeds=True,
    text_embed_dim=16,
    pooled_projection_dim=8,
    rope_axes_dim=(4, 6, 6),
    image_condition_type=None,
    has_image_proj=True,
    image_proj_dim=16,
    has_clean_x_embedder=True,
)


def _framepack_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "encoder_attention_mask": mask,
        "pooled_projections": randn(gen, batch, 8),
        "image_embeds": randn(gen, batch, 5, 16),
        "indices_latents": torch.tensor([8, 9]),
        "guidance": torch.full((batch,), 10000.0),
        "latents_clean": randn(gen, batch, 4, 2, 8, 8),
        "indices_latents_clean": torch.tensor([0, 7]),
        "latents_history_2x": randn(gen, batch, 4, 2, 8, 8),
        "indices_latents_history_2x": torch.tensor([5, 6]),
        "latents_history_4x": randn(gen, batch, 4, 4, 8, 8),
        "indices_latents_history_4x": torch.tensor([1, 2, 3, 4]),
        "return_dict": False,
    }


def _hunyuan_uncond(inputs):
    # Negative prompt (true CFG): zero text and pooled embeddings, only 2 valid text tokens.
    mask = torch.zeros_like(inputs["encoder_attention_mask"])
    mask[:, :2] = 1
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "encoder_attention_mask": mask,
        "pooled_projections": torch.zeros_like(inputs["pooled_projections"]),
    }


# ------------------------------------------------------------------------------- HunyuanVideo I2V (token replace)
# image_condition_type="token_replace": the first latent frame is the clean image latent; the blocks are the
# TokenReplace variants, which modulate the first frame's tokens with a t=0 embedding. 2 frames of 4x4 at patch 1 ->
# 32 tokens (16 per frame); 12 text tokens, 3 padding.
_HV_I2V = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_single_layers=2,
    num_refiner_layers=1,
    patch_size=1,
    patch_size_t=1,
    guidance_embeds=True,
    text_embed_dim=16,
    pooled_projection_dim=8,
    rope_axes_dim=(4, 6, 6),
    image_condition_type="token_replace",
)


def _hv_i2v_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 4, 4),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "encoder_attention_mask": mask,
        "pooled_projections": randn(gen, batch, 8),
        "guidance": torch.full((batch,), 6000.0),
        "return_dict": False,
    }


# -------------------------------------------------------------------------------------------------------- Cosmos
# Cosmos 1.0 text-to-world: 2 frames of 8x8 at patch (1, 2, 2) -> 32 tokens, 12 text tokens (T5, no mask passed by
# the pipeline), integer fps for the rotary table. The released models set concat_padding_mask=True (a pixel-size
# padding mask resized with torchvision and concatenated as one more input channel); torchvision is not a
# dependency here, so the padding-mask channel is switched off and no padding_mask is passed.
_COSMOS = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=3,
    mlp_ratio=2,
    text_embed_dim=16,
    adaln_lora_dim=4,
    max_size=(4, 32, 32),
    patch_size=(1, 2, 2),
    rope_scale=(2.0, 1.0, 1.0),
    concat_padding_mask=False,
    extra_pos_embed_type="learnable",
)


def _cosmos_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": torch.full((batch,), 1.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "fps": 30,
        "return_dict": False,
    }


# Cosmos 2 video-to-world: the first latent frame is the conditioning frame; a condition_mask channel is appended
# (in_channels = C + 1) and the timestep is per frame, shape (batch, 1, frames, 1, 1), near 0 on the first frame.
_COSMOS2_V2W = dict(
    _COSMOS,
    in_channels=4 + 1,
    rope_scale=(1.0, 3.0, 3.0),
    extra_pos_embed_type=None,
)


def _cosmos2_t(t: float, batch: int) -> torch.Tensor:
    ts = torch.full((batch, 1, 2, 1, 1), float(t))
    ts[:, :, 0] = 1e-4  # conditioning frame
    return ts


def _cosmos2_v2w_inputs(batch, gen):
    cond = torch.zeros(batch, 1, 2, 8, 8)
    cond[:, :, 0] = 1.0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": _cosmos2_t(1.0, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "fps": 16,
        "condition_mask": cond,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------- EasyAnimate
# EasyAnimate V5.1 style: every block is an MMDiT block (joint attention, separate text weights) -> mmdit_layers ==
# num_layers. 2 frames of 8x8 at patch 2 -> 32 tokens; 12 text tokens (Qwen2-VL embeddings, no mask passed).
_EASYANIMATE = dict(
    attention_head_dim=16,
    num_attention_heads=2,
    in_channels=4,
    mmdit_layers=3,
    num_layers=3,
    out_channels=4,
    patch_size=2,
    sample_height=60,
    sample_width=90,
    text_embed_dim=16,
    time_embed_dim=16,
    time_position_encoding_type="3d_rope",
    timestep_activation_fn="silu",
)


def _easyanimate_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "return_dict": False,
    }


# ---------------------------------------------------------------------------------------------------- Sana-Video
# Linear-attention video DiT: 2 frames of 8x8 at patch (1, 2, 2) -> 32 tokens; 12 Gemma text tokens with a mask.
_SANA_VIDEO = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=3,
    num_cross_attention_heads=2,
    cross_attention_head_dim=16,
    cross_attention_dim=32,
    caption_channels=16,
    mlp_ratio=2.5,
    dropout=0.0,
    attention_bias=False,
    sample_size=8,
    patch_size=(1, 2, 2),
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


def _sana_video_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "encoder_attention_mask": mask,
        "timestep": torch.full((batch,), 1000.0),
        "return_dict": False,
    }


# Sana-Video image-to-video: the timestep is per token, shape (batch, 1, frames, h, w) after patching, zero on the
# first (conditioning) frame, as SanaImageToVideoPipeline builds it from its conditioning mask.
def _sana_video_i2v_t(t: float, batch: int) -> torch.Tensor:
    ts = torch.full((batch, 1, 2, 4, 4), t * 1000.0)
    ts[:, :, 0] = 0.0
    return ts


def _sana_video_i2v_inputs(batch, gen):
    return {**_sana_video_inputs(batch, gen), "timestep": _sana_video_i2v_t(1.0, batch)}


# --------------------------------------------------------------------------------------------------- Motif-Video
# HunyuanVideo-like dual-stream then single-stream blocks. 2 frames of 8x8 at patch 2 -> 32 tokens; 12 text tokens
# (T5Gemma) with a mask. The real model takes [latents, first-frame latents, mask] on channels (2C+1 in, C out); here
# in == out so the prediction matches the latents.
_MOTIF = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_single_layers=2,
    num_decoder_layers=0,
    mlp_ratio=2.0,
    patch_size=2,
    patch_size_t=1,
    qk_norm="rms_norm",
    norm_type="layer_norm",
    text_embed_dim=16,
    image_embed_dim=8,
    rope_theta=256.0,
    rope_axes_dim=(4, 6, 6),
    enable_text_cross_attention_dual=False,
    enable_text_cross_attention_single=False,
)


def _motif_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "encoder_attention_mask": mask,
        "return_dict": False,
    }


# Motif-Video image-to-video with the optional structure switched on: 5 vision-encoder image tokens prepended to the
# text, extra text cross-attention in both block kinds, and the last single block run as a "decoder" (its stream is
# a copy of the patch embeddings taken before the blocks; the encoder blocks' output is its context). These switches
# are chosen to exercise the code paths; the released checkpoints' values are not known here.
_MOTIF_I2V = dict(
    _MOTIF,
    num_single_layers=3,
    num_decoder_layers=1,
    enable_text_cross_attention_dual=True,
    enable_text_cross_attention_single=True,
)


def _motif_i2v_inputs(batch, gen):
    return {**_motif_inputs(batch, gen), "image_embeds": randn(gen, batch, 5, 8)}


# ------------------------------------------------------------------------------------------------ JoyImage-Edit
# Multi-item input (batch, items, channels, frames, height, width): item 0 the reference image latent, the last item
# the noisy target (the pipeline steps the whole tensor and restores the references). 2 items of 8x8 at patch
# (1, 2, 2) -> 32 image tokens; 12 text tokens.
_JOYIMAGE = dict(
    patch_size=[1, 2, 2],
    in_channels=4,
    hidden_size=32,
    num_attention_heads=2,
    text_dim=16,
    num_layers=3,
    rope_dim_list=[4, 6, 6],
    theta=256,
)


def _joyimage_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 2, 4, 1, 8, 8),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "return_dict": False,
    }


# JoyImage-Edit-Plus: inputs come pre-patchified as (batch, tokens, channels, 1, 2, 2) with `shape_list` giving each
# component's token grid (reference 1x4x4, target 1x4x4 -> 32 tokens) plus 2 padding tokens; a text mask (12
# tokens, 3 padding) and the image padding build one joint attention mask.
_JOYIMAGE_PLUS = dict(_JOYIMAGE)


def _joyimage_plus_inputs(batch, gen):
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 34, 4, 1, 2, 2),
        "timestep": torch.full((batch,), 1000.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "encoder_hidden_states_mask": mask,
        "shape_list": [[(1, 4, 4), (1, 4, 4)] for _ in range(batch)],
        "return_dict": False,
    }


# ------------------------------------------------------------------------------------------------------- SANA-WM
# Camera-controlled world model (stage 1). Blocks alternate a gated-delta-net linear attention and (every
# `softmax_every_n`-th block) softmax attention, both camera-conditioned (UCPE ray transforms built once from the
# per-frame camera conditions and shared by all blocks), plus Plucker-ray embeddings added after attention.
# 2 latent frames (9 pixel frames, LTX-2 VAE stride 8/32) of 4x4 at patch 1 -> 32 tokens; text (batch, 1, 12, D) with
# a mask named `mask` as the pipeline passes it; per-frame timestep (batch, 1, frames), 0 on the conditioning frame.
_SANA_WM = dict(
    in_channels=4,
    num_layers=2,
    hidden_size=32,
    num_attention_heads=2,
    patch_size=(1, 1, 1),
    softmax_every_n=2,  # block 0: GDN linear attention, block 1: softmax attention
    linear_head_dim=16,
    chunk_plucker_channels=48,  # 6 Plucker dims x VAE temporal stride 8
    chunk_plucker_post_attn_blocks=2,
    caption_channels=16,
    mlp_ratio=2.0,
)


def _sana_wm_camera(latent_frames: int, latent_hw: int):
    """The camera tensors SanaWMPipeline builds (raymap, chunk_plucker) for a short forward dolly."""
    import numpy as np
    from diffusers.pipelines.sana_wm.cam_utils import prepare_camera

    frames = (latent_frames - 1) * 8 + 1
    poses = np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1))
    poses[:, 2, 3] = np.linspace(0.0, 0.5, frames, dtype=np.float32)  # move along z
    poses[:, 0, 3] = np.linspace(0.0, 0.1, frames, dtype=np.float32)
    size = latent_hw * 32
    intrinsics = np.tile(np.array([[size * 0.8, size * 0.8, size / 2, size / 2]], dtype=np.float32), (frames, 1))
    cam = prepare_camera(poses, intrinsics, target_size=(size, size), vae_stride=(8, 32, 32))
    return cam["raymap"].unsqueeze(0), cam["chunk_plucker"].unsqueeze(0)


def _sana_wm_t(t: float, batch: int) -> torch.Tensor:
    ts = torch.full((batch, 1, 2), t * 1000.0)
    ts[:, :, 0] = 0.0  # the first latent frame is the clean image latent
    return ts


def _sana_wm_inputs(batch, gen):
    raymap, plucker = _sana_wm_camera(2, 4)
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 4, 2, 4, 4),
        "timestep": _sana_wm_t(1.0, batch),
        "encoder_hidden_states": randn(gen, batch, 1, 12, 16),
        "mask": mask,
        "camera_conditions": raymap.expand(batch, -1, -1).clone(),
        "chunk_plucker": plucker.expand(batch, -1, -1, -1, -1).clone(),
        "return_dict": False,
    }


def _sana_wm_uncond(inputs):
    mask = torch.zeros_like(inputs["mask"])
    mask[:, :2] = 1
    return {"encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]), "mask": mask}


# SANA-WM stage-2 refiner: an LTX-2 video-only transformer (the audio modules exist but are not run) that refines the
# video chunk by chunk. Patchified tokens (batch, 32, C) for a 2-frame 4x4 chunk; per-token timestep (batch, 32);
# the RoPE for the chunk's absolute frame positions is built by the caller (here with the model's own helper on a
# standalone rotary module). No classifier-free guidance in the refiner.
_SANA_WM_REFINER = dict(
    in_channels=4,
    out_channels=4,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=2,
    attention_head_dim=16,
    cross_attention_dim=32,
    audio_in_channels=4,
    audio_out_channels=4,
    audio_num_attention_heads=2,
    audio_attention_head_dim=8,
    audio_cross_attention_dim=16,
    num_layers=3,
    qk_norm="rms_norm_across_heads",
    caption_channels=16,
    rope_double_precision=False,
)


def _refiner_rope(frame_positions, height, width, fps=24.0):
    import types

    from diffusers.models.transformers.transformer_sana_wm_refiner import (
        SanaWMLTX2AudioVideoRotaryPosEmbed,
        SanaWMLTX2RefinerTransformer3DModel,
    )

    c = _SANA_WM_REFINER
    rope = SanaWMLTX2AudioVideoRotaryPosEmbed(  # built the way the model builds its `rope`
        dim=c["num_attention_heads"] * c["attention_head_dim"],
        patch_size=1,
        patch_size_t=1,
        base_num_frames=20,
        base_height=2048,
        base_width=2048,
        scale_factors=(8, 32, 32),
        theta=10000.0,
        causal_offset=1,
        modality="video",
        double_precision=False,
        rope_type="interleaved",
        num_attention_heads=c["num_attention_heads"],
    )
    return SanaWMLTX2RefinerTransformer3DModel.build_rotary_emb_for_absolute_positions(
        types.SimpleNamespace(rope=rope), 1, list(frame_positions), height, width, torch.device("cpu"), fps
    )


def _refiner_t(t: float, batch: int) -> torch.Tensor:
    return torch.full((batch, 32), t * 1000.0)


def _refiner_inputs(batch, gen):
    cos, sin = _refiner_rope([3, 4], 4, 4)
    mask = torch.ones(batch, 12)
    mask[:, 9:] = 0
    return {
        "hidden_states": randn(gen, batch, 32, 4),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": _refiner_t(1.0, batch),
        "video_rotary_emb": (cos.expand(batch, *cos.shape[1:]), sin.expand(batch, *sin.shape[1:])),
        "encoder_attention_mask": mask,
        "return_dict": False,
    }


# The refiner as its AR loop calls it on the denoising steps: kv_cache_mode="inject" with a cache holding, per layer,
# the pre-RoPE K/V of a 1-frame attention sink (re-RoPE'd inside with the cache's `sink_pe`) and the post-RoPE K/V of
# 1 refined history frame, so each block's self-attention attends to [16 sink + 16 history + 32 current] keys.
def _refiner_kv_inputs(batch, gen):
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMRefinerKVCache

    inputs = _refiner_inputs(batch, gen)
    inner = _SANA_WM_REFINER["num_attention_heads"] * _SANA_WM_REFINER["attention_head_dim"]
    cache = SanaWMRefinerKVCache(_SANA_WM_REFINER["num_layers"])
    for layer in cache.layer_caches:
        layer.store_sink(randn(gen, batch, 16, inner), randn(gen, batch, 16, inner))
        layer.store_history(randn(gen, batch, 16, inner), randn(gen, batch, 16, inner))
    cos, sin = _refiner_rope([1], 4, 4)
    cache.sink_pe = (cos.expand(batch, *cos.shape[1:]), sin.expand(batch, *sin.shape[1:]))
    return {**inputs, "kv_cache": cache, "kv_cache_mode": "inject"}


MODELS: list[ModelSpec] = [
    ModelSpec("cogvideox", "CogVideoXTransformer3DModel", _COGVIDEOX, _cogvideox_inputs, make_timestep=long_timestep,
        sequence=('transformer_blocks',),
        carries={'CogVideoXBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec("cogvideox15", "CogVideoXTransformer3DModel", _COGVIDEOX15, _cogvideox15_inputs, make_timestep=long_timestep,
        sequence=('transformer_blocks',),
        carries={'CogVideoXBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec("consisid", "ConsisIDTransformer3DModel", _CONSISID, _consisid_inputs, make_timestep=long_timestep,
        sequence=('transformer_blocks',),
        carries={'ConsisIDBlock': ('hidden_states', 'encoder_hidden_states')},
        hook_note="differs: adds the perceiver cross-attention's output a second time",
    ),
    ModelSpec("allegro", "AllegroTransformer3DModel", _ALLEGRO, _allegro_inputs, make_timestep=long_timestep,
        sequence=('transformer_blocks',),
        carries={'AllegroTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("latte", "LatteTransformer3DModel", _LATTE, _latte_inputs, make_timestep=long_timestep,
        sequence=('transformer_blocks', 'temporal_transformer_blocks'),
        carries={'BasicTransformerBlock': ('hidden_states',)},
        hook_note="crashes: the spatial and temporal blocks' streams have different layouts",
    ),
    ModelSpec(
        "mochi",
        "MochiTransformer3DModel",
        _MOCHI,
        _mochi_inputs,
        # Mochi's scheduler inverts sigmas: the model sees (1 - sigma) * 1000.
        make_timestep=lambda t, batch: torch.full((batch,), (1.0 - t) * 1000.0),
        uncond=_mochi_uncond,
        sequence=('transformer_blocks',),
        carries={'MochiTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec("ltx2", "LTX2VideoTransformer3DModel", _LTX2, _ltx2_inputs, uncond=_ltx2_uncond,
        sequence=('transformer_blocks',),
        carries={'LTX2VideoTransformerBlock': ('hidden_states', 'audio_hidden_states')},
        hook_note='crashes: the blocks return two streams, neither of them text',
    ),
    # The same call seen from the audio latents (the pipeline steps both; the loop here steps one of them).
    ModelSpec(
        "ltx2_audio",
        "LTX2VideoTransformer3DModel",
        _LTX2,
        _ltx2_inputs,
        latent="audio_hidden_states",
        uncond=_ltx2_uncond,
        velocity=lambda out: out[1],
        sequence=('transformer_blocks',),
        carries={'LTX2VideoTransformerBlock': ('hidden_states', 'audio_hidden_states')},
        hook_note='crashes: the blocks return two streams, neither of them text',
    ),
    # NOT one graph under fullgraph=True, whatever the settings: forward() branches on tensor data,
    # `is_t2v = torch.all(image_embeds == 0); if is_t2v:` (transformer_hunyuan_video15.py:701-702), and no input a
    # pipeline passes avoids it (image_embeds is required: zeros for text-to-video, SigLIP features for I2V). After
    # that break, the text/image token reordering uses boolean-mask indexing (`image[image_mask]`, line 743 on), an
    # aten.nonzero graph break unless capture_dynamic_output_shape_ops is on; with it, fullgraph=False gives exactly 2
    # graphs (embedders + token refiner | all main blocks + output) and no recompiles across cond/uncond steps.
    ModelSpec(
        "hunyuanvideo15",
        "HunyuanVideo15Transformer3DModel",
        _HV15,
        _hv15_inputs,
        uncond=_hv15_uncond,
        dynamo_config={"capture_dynamic_output_shape_ops": True},
        sequence=('transformer_blocks',),
        carries={'HunyuanVideo15TransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
        fullgraph=False,
    ),
    ModelSpec(
        "hunyuanvideo_framepack",
        "HunyuanVideoFramepackTransformer3DModel",
        _FRAMEPACK,
        _framepack_inputs,
        uncond=_hunyuan_uncond,
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'HunyuanVideoTransformerBlock': ('hidden_states', 'encoder_hidden_states'), 'HunyuanVideoSingleTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
        unsupported=("at batch 1 the text length is read from a tensor (.item()), so the streams' sizes are "
                     "known only at run time and the cache cannot shape its residuals ahead of a call"),
    ),
    ModelSpec("hunyuanvideo_i2v", "HunyuanVideoTransformer3DModel", _HV_I2V, _hv_i2v_inputs, uncond=_hunyuan_uncond,
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'HunyuanVideoTokenReplaceTransformerBlock': ('hidden_states', 'encoder_hidden_states'), 'HunyuanVideoTokenReplaceSingleTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec("cosmos", "CosmosTransformer3DModel", _COSMOS, _cosmos_inputs, make_timestep=unit_timestep,
        sequence=('transformer_blocks',),
        carries={'CosmosTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "cosmos2_video2world", "CosmosTransformer3DModel", _COSMOS2_V2W, _cosmos2_v2w_inputs, make_timestep=_cosmos2_t,
        sequence=('transformer_blocks',),
        carries={'CosmosTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("easyanimate", "EasyAnimateTransformer3DModel", _EASYANIMATE, _easyanimate_inputs,
        sequence=('transformer_blocks',),
        carries={'EasyAnimateTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec("sana_video", "SanaVideoTransformer3DModel", _SANA_VIDEO, _sana_video_inputs,
        sequence=('transformer_blocks',),
        carries={'SanaVideoTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "sana_video_i2v",
        "SanaVideoTransformer3DModel",
        _SANA_VIDEO,
        _sana_video_i2v_inputs,
        make_timestep=_sana_video_i2v_t,
        sequence=('transformer_blocks',),
        carries={'SanaVideoTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec("motif_video", "MotifVideoTransformer3DModel", _MOTIF, _motif_inputs,
        sequence=('transformer_blocks', 'single_transformer_blocks'),
        carries={'MotifVideoTransformerBlock': ('hidden_states', 'encoder_hidden_states'), 'MotifVideoSingleTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook=True,
    ),
    ModelSpec("motif_video_i2v", "MotifVideoTransformer3DModel", _MOTIF_I2V, _motif_i2v_inputs,
        sequence=('transformer_blocks',),  # its decoder block's two input streams cannot be told apart: tail
        carries={'MotifVideoTransformerBlock': ('hidden_states', 'encoder_hidden_states'), 'MotifVideoSingleTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook_note='crashes: takes the decoder blocks as well',
    ),
    ModelSpec("joyimage_edit", "JoyImageEditTransformer3DModel", _JOYIMAGE, _joyimage_inputs,
        sequence=('double_blocks',),
        carries={'JoyImageTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook_note='does not run: none of its block lists has a name the hook looks for',
    ),
    ModelSpec("joyimage_edit_plus", "JoyImageEditPlusTransformer3DModel", _JOYIMAGE_PLUS, _joyimage_plus_inputs,
        sequence=('double_blocks',),
        carries={'JoyImageEditPlusTransformerBlock': ('hidden_states', 'encoder_hidden_states')},
        hook_note='does not run: none of its block lists has a name the hook looks for',
    ),
    ModelSpec(
        "sana_wm",
        "SanaWMTransformer3DModel",
        _SANA_WM,
        _sana_wm_inputs,
        make_timestep=_sana_wm_t,
        uncond=_sana_wm_uncond,
        sequence=('blocks',),
        carries={'SanaVideoMSCamCtrlBlock': ('x',)},
        hook_note='crashes: asks each block for `hidden_states`; its stream is `x`',
    ),
    ModelSpec(
        "sana_wm_refiner",
        "SanaWMLTX2RefinerTransformer3DModel",
        _SANA_WM_REFINER,
        _refiner_inputs,
        make_timestep=_refiner_t,
        uncond=None,
        sequence=('transformer_blocks',),
        carries={'SanaWMLTX2RefinerTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        "sana_wm_refiner_kv",
        "SanaWMLTX2RefinerTransformer3DModel",
        _SANA_WM_REFINER,
        _refiner_kv_inputs,
        make_timestep=_refiner_t,
        uncond=None,
        sequence=('transformer_blocks',),
        carries={'SanaWMLTX2RefinerTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
]
