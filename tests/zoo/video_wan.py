"""Tiny Wan-family and other video transformers (image-to-video Wan, VACE, Animate, SkyReels, ChronoEdit, Helios,
AnyFlow, MiniMax-H3, Kandinsky 5/6).

Configs follow the spirit of diffusers' ``tests/models/transformers/`` (a few blocks, widths of 32), with inputs laid
out the way each pipeline calls the denoiser. Several of these models take a channel-concatenated conditioning layout
(``[noisy latent | mask | condition latent]``) in the argument a sampler updates and predict only the noisy part; for
those, ``velocity`` appends zeros for the conditioning channels so the prediction has the latent argument's shape and
an Euler step leaves the conditioning channels untouched, which is what the pipeline does when it re-concatenates
them every step.
"""

from __future__ import annotations

import torch

from .spec import ModelSpec, randn

__all__ = ["MODELS"]

# Wan 2.1's attention processor splits the cross-attention context at a hard-coded text length of 512 tokens whenever
# the block has added (image) key/value projections, so every image-conditioned Wan-style model needs exactly this
# many text tokens (the pipelines pad the T5 embeddings to 512).
WAN_TEXT_LEN = 512


def _pad_channels(dim: int, total: int):
    """``velocity`` for a model whose latent argument carries ``total`` channels along ``dim`` while the prediction
    covers only the leading ones: zeros are appended for the conditioning channels (they do not move)."""

    def velocity(output):
        out = output[0]
        pad_shape = list(out.shape)
        pad_shape[dim] = total - out.shape[dim]
        return torch.cat([out, out.new_zeros(pad_shape)], dim=dim)

    return velocity


def _zero(*names: str):
    def uncond(inputs: dict) -> dict:
        return {name: torch.zeros_like(inputs[name]) for name in names}

    return uncond


# --------------------------------------------------------------------------------------------------------------------
# Wan 2.1 image-to-video: [latent(4) | mask(4) | image condition latent(4)] in, 4 out; CLIP image tokens through the
# added K/V projections of every cross-attention.
# --------------------------------------------------------------------------------------------------------------------
_WAN_DIM = dict(num_attention_heads=2, attention_head_dim=16, freq_dim=32, ffn_dim=64, text_dim=16)


def _wan_i2v_inputs(batch, gen):
    latent_c, mask_c, frames, size = 4, 4, 2, 8
    return {
        "hidden_states": randn(gen, batch, 2 * latent_c + mask_c, frames, size, size),
        "timestep": torch.full((batch,), 999.0),
        "encoder_hidden_states": randn(gen, batch, WAN_TEXT_LEN, 16),
        "encoder_hidden_states_image": randn(gen, batch, 8, 16),
        "return_dict": False,
    }


# Wan 2.2 TI2V (``expand_timesteps``): no image embeddings, the first latent frame is the clean image, and the
# timestep is given per token (0 for the first frame's tokens).
def _wan22_ti2v_timestep(t: float, batch: int) -> torch.Tensor:
    frames, tokens_per_frame = 2, 16
    ts = torch.full((batch, frames, tokens_per_frame), t * 1000.0)
    ts[:, 0] = 0.0
    return ts.flatten(1)


def _wan22_ti2v_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": _wan22_ti2v_timestep(1.0, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# Wan VACE: control latents (2 * 4 video channels + 64 mask channels) feed two VACE blocks whose hints are added after
# main blocks 0 and 2.
# --------------------------------------------------------------------------------------------------------------------
def _wan_vace_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": torch.full((batch,), 999.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "control_hidden_states": randn(gen, batch, 72, 2, 8, 8),
        "control_hidden_states_scale": torch.ones(2),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# Wan 2.2 Animate: [latent(4) | reference(4) | mask(4)] over T + 1 = 5 latent frames, pose latents for the last 4,
# a 13-frame 16x16 face video through the motion and face encoders; face adapters after blocks 0 and 2.
# --------------------------------------------------------------------------------------------------------------------
def _wan_animate_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 12, 5, 8, 8),
        "timestep": torch.full((batch,), 999.0),
        "encoder_hidden_states": randn(gen, batch, WAN_TEXT_LEN, 16),
        "encoder_hidden_states_image": randn(gen, batch, 8, 16),
        "pose_hidden_states": randn(gen, batch, 4, 4, 8, 8),
        "face_pixel_values": randn(gen, batch, 3, 13, 16, 16),
        "return_dict": False,
    }


def _wan_animate_uncond(inputs):
    # The pipeline blanks the face video (all pixels -1) besides using the negative prompt.
    return {
        "encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]),
        "face_pixel_values": torch.full_like(inputs["face_pixel_values"], -1.0),
    }


# --------------------------------------------------------------------------------------------------------------------
# Wan-Animate-2: one denoising step of the "cached" pass. The per-sample lists the pipeline passes
# (``[latents]``, ``[prompt_embeds]``, ``[condition]``) are given as batched tensors, which the forward iterates the
# same way. The KV cache that the "extract" (reference) pass fills is pre-filled with random pre-RoPE keys/values.
# --------------------------------------------------------------------------------------------------------------------
_A2_REF_FRAMES, _A2_LATENT_HW = 2, 4  # latent 4x4 -> 2x2 = 4 tokens per frame; 32x32 pixels
_A2_DIM, _A2_HEADS, _A2_LAYERS = 32, 2, 3


def _wan_animate2_inputs(batch, gen):
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    gen_frames = _A2_REF_FRAMES + 1
    tokens_per_frame = (_A2_LATENT_HW // 2) ** 2
    cache = WanAnimate2KVCache(_A2_LAYERS)
    for layer in cache.layer_caches:
        shape = (batch, _A2_REF_FRAMES * tokens_per_frame, _A2_HEADS, _A2_DIM // _A2_HEADS)
        layer.store(randn(gen, *shape), randn(gen, *shape))
    return {
        "hidden_states": randn(gen, batch, 4, gen_frames, _A2_LATENT_HW, _A2_LATENT_HW),
        "timestep": torch.tensor([999.0]),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "condition_latents": randn(gen, batch, 8, gen_frames, _A2_LATENT_HW, _A2_LATENT_HW),
        "encoder_hidden_states_image": randn(gen, batch, 4, 1280),
        "kv_cache": cache,
        "kv_cache_mode": "cached",
        "seq_len": gen_frames * tokens_per_frame,
        # one (t, h, w) row per sample: rope_apply loops over these rows
        "reference_grid_sizes": torch.tensor([[_A2_REF_FRAMES, _A2_LATENT_HW // 2, _A2_LATENT_HW // 2]] * batch),
        "origin_len": 4 * _A2_REF_FRAMES - 3,  # origin_len // 4 + 1 == reference frames
        "origin_area": [8 * _A2_LATENT_HW, 8 * _A2_LATENT_HW],
        "is_uncondtion": False,
        "return_dict": False,
    }


def _wan_animate2_uncond(inputs):
    # The modular pipeline's guider passes the negative prompt and `is_uncondtion=True` (the spelling is diffusers').
    return {"encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"]), "is_uncondtion": True}


def _stack_first(output):
    # The forward returns ``([per-sample prediction, ...],)``.
    return torch.stack(output[0])


# --------------------------------------------------------------------------------------------------------------------
# SkyReels-V2
# --------------------------------------------------------------------------------------------------------------------
def _skyreels_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 2, 8, 8),
        "timestep": torch.full((batch,), 999.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "return_dict": False,
    }


# Diffusion forcing: one timestep per latent frame (earlier frames less noisy), causal attention over blocks of 2
# latent frames (`num_frame_per_block`, what `_set_ar_attention(2)` sets), and the fps embedding. Batch 1 only:
# with `inject_sample_info` and diffusion forcing, diffusers repeats the fps projection along the wrong axis
# (transformer_skyreels_v2.py, `.repeat(timestep.shape[1], 1, 1)`) and a batch of 2 fails to broadcast.
def _skyreels_df_timestep(t: float, batch: int) -> torch.Tensor:
    ramp = torch.tensor([0.25, 0.5, 0.75, 1.0])
    return (t * 1000.0 * ramp).expand(batch, -1).contiguous()


def _skyreels_df_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 4, 4, 8, 8),
        "timestep": _skyreels_df_timestep(1.0, batch),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "enable_diffusion_forcing": True,
        "fps": [1] * batch,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# ChronoEdit (Wan 2.1 I2V layout, two latent frames: input image and edited image)
# --------------------------------------------------------------------------------------------------------------------
def _chronoedit_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 12, 2, 8, 8),
        "timestep": torch.full((batch,), 999.0),
        "encoder_hidden_states": randn(gen, batch, WAN_TEXT_LEN, 16),
        "encoder_hidden_states_image": randn(gen, batch, 8, 16),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# Helios: 2 noisy latent frames plus short (1), mid (2) and long (4) history latents with the pipeline's frame indices
# (arange over [long | mid | short | current]).
# --------------------------------------------------------------------------------------------------------------------
def _helios_inputs(batch, gen):
    long_n, mid_n, short_n, cur_n = 4, 2, 1, 2
    idx = torch.arange(long_n + mid_n + short_n + cur_n)
    i_long, i_mid, i_short, i_cur = idx.split([long_n, mid_n, short_n, cur_n])

    def rows(i):
        return i.unsqueeze(0).expand(batch, -1).contiguous()

    return {
        "hidden_states": randn(gen, batch, 4, cur_n, 8, 8),
        "timestep": torch.full((batch,), 999.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "indices_hidden_states": rows(i_cur),
        "indices_latents_history_short": rows(i_short),
        "indices_latents_history_mid": rows(i_mid),
        "indices_latents_history_long": rows(i_long),
        "latents_history_short": randn(gen, batch, 4, short_n, 8, 8),
        "latents_history_mid": randn(gen, batch, 4, mid_n, 8, 8),
        "latents_history_long": randn(gen, batch, 4, long_n, 8, 8),
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# AnyFlow (bidirectional flow map): latents (B, F, C, H, W), per-frame `timestep` t and target `r_timestep` r. The
# pipeline moves r with t every step; here r stays a fixed tensor (only `timestep` is driven by the loop).
# --------------------------------------------------------------------------------------------------------------------
def _anyflow_timestep(t: float, batch: int) -> torch.Tensor:
    return torch.full((batch, 2), t * 1000.0)


def _anyflow_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 2, 4, 8, 8),
        "timestep": _anyflow_timestep(1.0, batch),
        "r_timestep": torch.full((batch, 2), 750.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "return_dict": False,
    }


# AnyFlow FAR, the pipeline's autoregressive inference step: the third one-frame chunk of chunk_partition [1, 1, 1]
# attends to a KV cache holding chunk 0 (compressed, 4x4 patches) and chunk 1 (full, 2x2 patches). The cache is
# pre-filled with random keys/values (what `encode_kv_cache` would have written); `kv_cache_flag` already holds the
# token counts the forward writes into it, so the call does not change the dict's keys (the pipeline passes a
# deep copy per call instead).
_FAR_HEADS, _FAR_HEAD_DIM, _FAR_LAYERS = 2, 16, 3


def _anyflow_far_timestep(t: float, batch: int) -> torch.Tensor:
    return torch.full((batch, 1), t * 1000.0)


def _anyflow_far_inputs(batch, gen):
    full_tokens, compressed_tokens = 16, 4  # per frame, 8x8 latent
    full_chunk_limit, partition = 2, [1, 1, 1]
    cache = {
        layer: {
            "full_cache": randn(gen, 2, batch, _FAR_HEADS, full_chunk_limit * max(partition) * full_tokens,
                                _FAR_HEAD_DIM),
            "compressed_cache": randn(gen, 2, batch, _FAR_HEADS,
                                      (len(partition) - full_chunk_limit + 1) * max(partition) * compressed_tokens,
                                      _FAR_HEAD_DIM),
        }
        for layer in range(_FAR_LAYERS)
    }
    flag = {
        "num_cached_chunks": 2,
        "is_cache_step": False,
        "num_cached_full_tokens": 1 * full_tokens,
        "num_cached_compressed_tokens": 1 * compressed_tokens,
    }
    return {
        "hidden_states": randn(gen, batch, 1, 4, 8, 8),
        "timestep": _anyflow_far_timestep(1.0, batch),
        "r_timestep": torch.full((batch, 1), 750.0),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "chunk_partition": partition,
        "kv_cache": cache,
        "kv_cache_flag": flag,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# MiniMax-H3: one packed sequence [text(12) | audio(6) | video(16)]; two distinct timesteps in [0, 1] (video rows and
# text at index 0, audio rows at index 1). The modular pipeline runs no CFG; the uncond branch here zeroes the text.
# --------------------------------------------------------------------------------------------------------------------
_MM_TEXT, _MM_AUDIO, _MM_VIDEO = 12, 6, 16


def _minimax_timestep(t: float, batch: int) -> torch.Tensor:
    return torch.tensor([0.8 * t, t])


def _minimax_inputs(batch, gen):
    seq = _MM_TEXT + _MM_AUDIO + _MM_VIDEO
    text_idx = torch.arange(_MM_TEXT)
    audio_idx = torch.arange(_MM_TEXT, _MM_TEXT + _MM_AUDIO)
    video_idx = torch.arange(_MM_TEXT + _MM_AUDIO, seq)
    tags = torch.zeros(seq, dtype=torch.long)
    tags[text_idx] = 1
    tags[audio_idx] = 2
    ts_idx = torch.zeros(seq, dtype=torch.long)
    ts_idx[audio_idx] = 1
    pos = torch.zeros(seq, 3)
    pos[:, 0] = torch.arange(seq, dtype=torch.float32)
    pos[video_idx, 1] = (torch.arange(_MM_VIDEO) // 4).float()  # one 4x4 latent frame (8x8 latent, 2x2 patches)
    pos[video_idx, 2] = (torch.arange(_MM_VIDEO) % 4).float()
    return {
        "hidden_states": randn(gen, batch, _MM_VIDEO, 16),
        "audio_hidden_states": randn(gen, batch, _MM_AUDIO, 6),
        "encoder_hidden_states": randn(gen, batch, _MM_TEXT, 16),
        "timestep": _minimax_timestep(1.0, batch),
        "timestep_indices": ts_idx,
        "token_tags": tags,
        "position_ids": pos,
        "video_indices": video_idx,
        "audio_indices": audio_idx,
        "text_indices": text_idx,
        "return_dict": False,
    }


# --------------------------------------------------------------------------------------------------------------------
# Kandinsky 5: channel-last latents [latent(4) | visual cond(4) | mask(1)]; Qwen text tokens + CLIP pooled embedding.
# --------------------------------------------------------------------------------------------------------------------
def _kandinsky5_inputs(batch, gen):
    frames, size = 2, 8
    return {
        "hidden_states": randn(gen, batch, frames, size, size, 9),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "timestep": torch.full((batch,), 999.0),
        "pooled_projections": randn(gen, batch, 8),
        "visual_rope_pos": [torch.arange(frames), torch.arange(size // 2), torch.arange(size // 2)],
        "text_rope_pos": torch.arange(12),
        "scale_factor": (1.0, 1.0, 1.0),
        "sparse_params": None,
        "return_dict": False,
    }


def _kandinsky5_velocity(output):
    # With return_dict=False the forward returns the tensor itself, not a tuple.
    return torch.cat([output, output.new_zeros(*output.shape[:-1], 5)], dim=-1)


# --------------------------------------------------------------------------------------------------------------------
# Kandinsky 6 (text/image to video + audio): channel-last video latents [latent(4) | cond(4) | mask(1)] and audio
# latents; fused video/audio blocks. Flags as in the released checkpoints (ca_rope, cross_gates, fix_modulation).
# --------------------------------------------------------------------------------------------------------------------
def _kandinsky6_inputs(batch, gen, audio=True, image=False):
    frames = 2 + (1 if image else 0)
    inputs = {
        "hidden_states": randn(gen, batch, frames, 8, 8, 9),
        "encoder_hidden_states": randn(gen, batch, 12, 16),
        "pooled_projections": randn(gen, batch, 8),
        "timestep": torch.full((batch,), 999.0),
        "return_dict": False,
    }
    if audio:
        inputs["audio_hidden_states"] = randn(gen, batch, 10, 6)
    if image:
        # The clean reference frame is appended as an extra tail frame that reuses temporal position 0 and carries
        # token type 1.
        types = torch.zeros(batch, frames, dtype=torch.long)
        types[:, -1] = 1
        inputs["visual_token_type_ids"] = types
        inputs["visual_rope_pos"] = (torch.tensor([0, 1, 0]), torch.arange(4), torch.arange(4))
    return inputs


def _kandinsky6_uncond(inputs):
    return _zero("encoder_hidden_states", "pooled_projections")(inputs)


# --------------------------------------------------------------------------------------------------------------------
# Kandinsky 6 SR: text-free; [latent(4) | anchor(4) | anchor mask(1)] channel-last; 8x8 token grid (NABLA needs the
# grid divisible by 8), patch size 1.
# --------------------------------------------------------------------------------------------------------------------
def _kandinsky6_sr_inputs(batch, gen):
    return {
        "hidden_states": randn(gen, batch, 2, 8, 8, 9),
        "timestep": torch.full((batch,), 999.0),
        "return_dict": False,
    }


_KANDINSKY6_CONFIG = dict(
    in_visual_dim=4,
    out_visual_dim=4,
    in_text_dim=16,
    in_text_dim2=8,
    time_dim=32,
    patch_size=(1, 2, 2),
    model_dim=32,
    ff_dim=64,
    num_text_blocks=2,
    num_visual_blocks=2,
    axes_dims=(4, 6, 6),
    visual_cond=True,
    in_audio_dim=6,
    out_audio_dim=6,
    text_token_padding=True,
    ca_rope=True,
    cross_gates=True,
    fix_modulation=True,
)

MODELS: list[ModelSpec] = [
    ModelSpec(
        name="wan_i2v",
        model_cls="WanTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=12,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            image_dim=16,
            added_kv_proj_dim=32,
            rope_max_seq_len=32,
            **_WAN_DIM,
        ),
        make_inputs=_wan_i2v_inputs,
        velocity=_pad_channels(1, 12),
        sequence=('blocks',),
        carries={'WanTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="wan22_ti2v",
        model_cls="WanTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=4,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            **_WAN_DIM,
        ),
        make_inputs=_wan22_ti2v_inputs,
        make_timestep=_wan22_ti2v_timestep,
        sequence=('blocks',),
        carries={'WanTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="wan_vace",
        model_cls="WanVACETransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=4,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            vace_layers=[0, 2],
            vace_in_channels=72,
            **_WAN_DIM,
        ),
        make_inputs=_wan_vace_inputs,
        sequence=('blocks',),
        carries={'WanTransformerBlock': ('hidden_states',)},
        hook_note='differs: adds the VACE hints a second time',
    ),
    ModelSpec(
        name="wan_animate",
        model_cls="WanAnimateTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=12,
            latent_channels=4,
            out_channels=4,
            num_layers=4,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            image_dim=16,
            added_kv_proj_dim=32,
            rope_max_seq_len=32,
            motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16},
            motion_encoder_size=16,
            motion_style_dim=8,
            motion_dim=4,
            motion_encoder_dim=16,
            face_encoder_hidden_dim=16,
            face_encoder_num_heads=2,
            inject_face_latents_blocks=2,
            **_WAN_DIM,
        ),
        make_inputs=_wan_animate_inputs,
        uncond=_wan_animate_uncond,
        velocity=_pad_channels(1, 12),
        sequence=('blocks',),
        carries={'WanTransformerBlock': ('hidden_states',)},
        hook_note="differs: adds the face adapter's output a second time",
    ),
    ModelSpec(
        name="wan_animate2",
        model_cls="WanAnimate2Transformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            text_len=16,
            in_dim=12,
            dim=_A2_DIM,
            ffn_dim=64,
            freq_dim=32,
            text_dim=16,
            out_dim=4,
            num_heads=_A2_HEADS,
            num_layers=_A2_LAYERS,
            cross_attn_norm=True,
            use_img_emb=True,
        ),
        make_inputs=_wan_animate2_inputs,
        make_timestep=lambda t, batch: torch.tensor([t * 1000.0]),
        uncond=_wan_animate2_uncond,
        velocity=_stack_first,
        sequence=('blocks',),
        carries={'WanAnimate2TransformerBlock': ('hidden_states',)},
        fullgraph=False,
        unsupported="shapes read back from tensors with .item()/.tolist() break every block's self-attention",
    ),
    ModelSpec(
        name="skyreels_v2",
        model_cls="SkyReelsV2Transformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=4,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            **_WAN_DIM,
        ),
        make_inputs=_skyreels_inputs,
        sequence=('blocks',),
        carries={'SkyReelsV2TransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="skyreels_v2_df",
        model_cls="SkyReelsV2Transformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=4,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
            inject_sample_info=True,
            num_frame_per_block=2,
            **_WAN_DIM,
        ),
        make_inputs=_skyreels_df_inputs,
        make_timestep=_skyreels_df_timestep,
        sequence=('blocks',),
        carries={'SkyReelsV2TransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="chronoedit",
        model_cls="ChronoEditTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=12,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            image_dim=16,
            added_kv_proj_dim=32,
            rope_max_seq_len=64,
            rope_temporal_skip_len=8,
            **_WAN_DIM,
        ),
        make_inputs=_chronoedit_inputs,
        velocity=_pad_channels(1, 12),
        sequence=('blocks',),
        carries={'WanTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="helios",
        model_cls="HeliosTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=4,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_dim=(4, 6, 6),
            has_multi_term_memory_patch=True,
            guidance_cross_attn=True,
            zero_history_timestep=True,
            is_amplify_history=False,
            **_WAN_DIM,
        ),
        make_inputs=_helios_inputs,
        sequence=('blocks',),
        carries={'HeliosTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="anyflow",
        model_cls="AnyFlowTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            in_channels=4,
            out_channels=4,
            num_layers=3,
            cross_attn_norm=True,
            rope_max_seq_len=32,
            gate_value=0.25,
            deltatime_type="r",
            **_WAN_DIM,
        ),
        make_inputs=_anyflow_inputs,
        make_timestep=_anyflow_timestep,
        sequence=('blocks',),
        carries={'AnyFlowTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="anyflow_far",
        model_cls="AnyFlowFARTransformer3DModel",
        config=dict(
            patch_size=(1, 2, 2),
            compressed_patch_size=(1, 4, 4),
            full_chunk_limit=2,
            in_channels=4,
            out_channels=4,
            num_layers=_FAR_LAYERS,
            cross_attn_norm=True,
            rope_max_seq_len=32,
            gate_value=0.25,
            deltatime_type="r",
            **_WAN_DIM,
        ),
        make_inputs=_anyflow_far_inputs,
        make_timestep=_anyflow_far_timestep,
        sequence=('blocks',),
        carries={'AnyFlowTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        name="minimax_h3",
        model_cls="MiniMaxH3Transformer3DModel",
        config=dict(
            num_attention_heads=2,
            attention_head_dim=16,
            hidden_size=32,
            num_layers=3,
            num_refiner_layers=2,
            ffn_dim=64,
            in_channels=4,
            audio_in_channels=6,
            patch_size=(1, 2, 2),
            text_dim=16,
            freq_dim=32,
            time_embed_hidden_dim=32,
            time_embed_dim=16,
            rope_freq_dim=2,
        ),
        make_inputs=_minimax_inputs,
        make_timestep=_minimax_timestep,
        sequence=('transformer_blocks',),
        carries={'MiniMaxH3TransformerBlock': ('hidden_states',)},
        hook=True,
    ),
    ModelSpec(
        reinit=("*modulation.out_layer.*",),  # adaLN-zero: see ModelSpec.reinit
        name="kandinsky5",
        model_cls="Kandinsky5Transformer3DModel",
        config=dict(
            in_visual_dim=4,
            in_text_dim=16,
            in_text_dim2=8,
            time_dim=32,
            out_visual_dim=4,
            patch_size=(1, 2, 2),
            model_dim=32,
            ff_dim=64,
            num_text_blocks=2,
            num_visual_blocks=2,
            axes_dims=(4, 6, 6),
            visual_cond=True,
            attention_type="regular",
        ),
        make_inputs=_kandinsky5_inputs,
        uncond=_zero("encoder_hidden_states", "pooled_projections"),
        velocity=_kandinsky5_velocity,
        sequence=('visual_transformer_blocks',),
        carries={'Kandinsky5TransformerDecoderBlock': ('visual_embed',)},
        hook_note='crashes: asks each block for `hidden_states`; its stream is `visual_embed`',
    ),
    ModelSpec(
        name="kandinsky6",
        model_cls="Kandinsky6Transformer3DModel",
        config=dict(_KANDINSKY6_CONFIG),
        make_inputs=_kandinsky6_inputs,
        uncond=_kandinsky6_uncond,
        velocity=_pad_channels(-1, 9),
        sequence=('visual_transformer_blocks',),
        carries={'Kandinsky6FusedTransformerDecoderBlock': ('vis', 'aud')},
        hidden='vis',
        hook_note='crashes: asks each block for `hidden_states`; its stream is `vis`',
    ),
    ModelSpec(
        name="kandinsky6_video",
        model_cls="Kandinsky6Transformer3DModel",
        config=dict(_KANDINSKY6_CONFIG),
        make_inputs=lambda batch, gen: _kandinsky6_inputs(batch, gen, audio=False),
        uncond=_kandinsky6_uncond,
        velocity=_pad_channels(-1, 9),
        sequence=('visual_transformer_blocks',),
        carries={'Kandinsky6FusedTransformerDecoderBlock': ('vis', 'aud')},
        hidden='vis',
        hook_note='crashes: asks each block for `hidden_states`; its stream is `vis`',
    ),
    ModelSpec(
        name="kandinsky6_i2va",
        model_cls="Kandinsky6Transformer3DModel",
        config=dict(_KANDINSKY6_CONFIG, visual_token_type_num_embeddings=2),
        make_inputs=lambda batch, gen: _kandinsky6_inputs(batch, gen, audio=True, image=True),
        uncond=_kandinsky6_uncond,
        velocity=_pad_channels(-1, 9),
        sequence=('visual_transformer_blocks',),
        carries={'Kandinsky6FusedTransformerDecoderBlock': ('vis', 'aud')},
        hidden='vis',
        hook_note='crashes: asks each block for `hidden_states`; its stream is `vis`',
    ),
    ModelSpec(
        name="kandinsky6_sr",
        model_cls="Kandinsky6SRTransformer3DModel",
        config=dict(
            in_visual_dim=4,
            out_visual_dim=4,
            time_dim=32,
            patch_size=(1, 1, 1),
            model_dim=32,
            ff_dim=64,
            num_visual_blocks=3,
            axes_dims=(4, 6, 6),
            nabla_threshold=0.8,
            nabla_window=(3, 3, 3),
        ),
        make_inputs=_kandinsky6_sr_inputs,
        uncond=None,
        velocity=_pad_channels(-1, 9),
        sequence=('visual_transformer_blocks',),
        carries={'Kandinsky6SRTransformerBlock': ('hidden_states',)},
        hook=True,
    ),
]
