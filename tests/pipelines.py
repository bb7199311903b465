"""Real diffusers pipelines built in memory from tiny components: no download, no tokenizer, no text encoder.

Each entry of :data:`PIPELINES` names a diffusers pipeline class, its tiny transformer (a ``zoo.seed`` factory,
so tests and benchmarks share one definition of "tiny Flux"), a tiny VAE with random weights
whose latent channels match the transformer, and the real flow-matching scheduler. :func:`call_kwargs` gives the
keyword arguments of one generation with the prompt embeddings passed directly (random, from a fixed generator,
shaped from the transformer's config), classifier-free guidance switched on where the pipeline has it, and a
fixed latent generator::

    pipe = build_pipeline("flux")
    (latents,) = pipe(**call_kwargs("flux", steps=8))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from zoo.seed import cogview4, flux, hunyuan_video, ltx_video, wan
from zoo.spec import ModelSpec

__all__ = ["PipelineSpec", "PIPELINES", "build_pipeline", "call_kwargs", "spec_for"]


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """How to build one tiny pipeline and call it.

    ``text`` maps each prompt-embedding argument to its shape without the batch dimension; a string in a shape is
    read from the transformer's config (``"joint_attention_dim"``), and the shape ``"mask"`` is an attention mask
    of ones over the prompt tokens. With guidance on, the same names with a ``negative_`` prefix carry the
    unconditional branch. ``call`` holds the fixed call arguments (size, frames, guidance). ``threshold`` gives
    both computed and skipped steps on the tiny random-weight model in a 10-step generation, with every measured
    difference at least a few thousandths away from it (so compile noise cannot flip a decision).
    """

    name: str
    pipeline_cls: str
    transformer: ModelSpec
    vae_cls: str
    vae_config: dict
    text: dict
    call: dict
    threshold: float
    scheduler_config: dict = dataclasses.field(default_factory=dict)


PROMPT_TOKENS = 12

# Tiny VAEs after diffusers' own pipeline tests (tests/pipelines/*), with latent channels matching the zoo models.
KL_VAE = dict(block_out_channels=(4,), layers_per_block=1, norm_num_groups=1, latent_channels=4,
              use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
_VIDEO_4 = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1)

PIPELINES: dict[str, PipelineSpec] = {spec.name: spec for spec in (
    PipelineSpec(
        "flux", "FluxPipeline", flux(), "AutoencoderKL", KL_VAE,
        text=dict(prompt_embeds=(PROMPT_TOKENS, "joint_attention_dim"),
                  pooled_prompt_embeds=("pooled_projection_dim",)),
        call=dict(height=16, width=16, true_cfg_scale=2.0, guidance_scale=3.5),
        threshold=0.38,
    ),
    PipelineSpec(
        "wan", "WanPipeline", wan(),
        "AutoencoderKLWan", dict(base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4),
        text=dict(prompt_embeds=(PROMPT_TOKENS, "text_dim")),
        call=dict(height=64, width=64, num_frames=5, guidance_scale=5.0),
        threshold=0.0875,
    ),
    PipelineSpec(
        "hunyuan_video", "HunyuanVideoPipeline", hunyuan_video(),
        "AutoencoderKLHunyuanVideo", dict(
            _VIDEO_4, latent_channels=4, norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
            up_block_types=("HunyuanVideoUpBlock3D",) * 4, mid_block_add_attention=True),
        text=dict(prompt_embeds=(PROMPT_TOKENS, "text_embed_dim"), pooled_prompt_embeds=("pooled_projection_dim",),
                  prompt_attention_mask="mask"),
        call=dict(height=64, width=64, num_frames=5, true_cfg_scale=2.0, guidance_scale=6.0),
        threshold=0.395,
    ),
    PipelineSpec(
        "ltx_video", "LTXPipeline", ltx_video(),
        "AutoencoderKLLTXVideo", dict(
            _VIDEO_4, latent_channels=8, decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1,) * 5,
            decoder_layers_per_block=(1,) * 5, spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
            upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1,
            patch_size_t=1, encoder_causal=True, decoder_causal=False),
        text=dict(prompt_embeds=(PROMPT_TOKENS, "caption_channels"), prompt_attention_mask="mask"),
        call=dict(height=32, width=32, num_frames=9, guidance_scale=3.0),
        threshold=0.12,
    ),
    PipelineSpec(
        "cogview4", "CogView4Pipeline", cogview4(),
        "AutoencoderKL", dict(block_out_channels=(8, 8), latent_channels=4, norm_num_groups=4, layers_per_block=1,
                              down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2),
        text=dict(prompt_embeds=(PROMPT_TOKENS, "text_embed_dim")),
        call=dict(height=32, width=32, guidance_scale=5.0),
        threshold=0.3075,
        # CogView4's own scheduler settings (its pipeline reads base_shift / max_shift for the time shift).
        scheduler_config=dict(base_shift=0.25, max_shift=0.75, base_image_seq_len=256, time_shift_type="linear"),
    ),
)}


def build_pipeline(name: str, *, transformer: ModelSpec | None = None, vae_config: dict | None = None,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0):
    """The tiny pipeline ``name`` with random weights from ``seed``; ``transformer`` / ``vae_config`` resize it."""
    import diffusers

    spec = _spec(name)
    model = (transformer or spec.transformer).build(dtype=dtype, device=device, seed=seed)
    torch.manual_seed(seed + 1)
    vae = getattr(diffusers, spec.vae_cls)(**(vae_config or spec.vae_config)).to(device).eval()
    if dtype != torch.float32:  # (diffusers warns on every dtype cast of a VAE, a no-op one included)
        vae.to(dtype)
    pipeline_cls = getattr(diffusers, spec.pipeline_cls)
    components = dict.fromkeys(pipeline_cls._get_signature_keys(pipeline_cls)[0])
    components.update(transformer=model, vae=vae,
                      scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**spec.scheduler_config))
    pipe = pipeline_cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(name: str, *, steps: int = 10, batch: int = 1, cfg: bool = True, seed: int = 0,
                config=None, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                output_type: str = "latent", **overrides: Any) -> dict:
    """Keyword arguments for one generation of the pipeline ``name``, prompt embeddings included.

    ``config`` is the transformer config the embeddings are shaped for (default: the tiny one). ``cfg=False``
    switches classifier-free guidance off (no negative embeddings, and guidance scale 1 where that is the
    pipeline's switch). ``overrides`` replace any argument (``height=...``, ``output_type="pil"``).
    """
    spec = _spec(name)
    config = config if config is not None else spec.transformer.config
    gen = torch.Generator().manual_seed(seed)
    kwargs: dict[str, Any] = dict(spec.call, max_sequence_length=PROMPT_TOKENS)
    for prefix in ("", "negative_") if cfg else ("",):
        for key, shape in spec.text.items():
            if shape == "mask":
                value = torch.ones(batch, PROMPT_TOKENS)
            else:
                shape = [config[dim] if isinstance(dim, str) else dim for dim in shape]
                value = torch.randn(batch, *shape, generator=gen).to(dtype)
            kwargs[prefix + key] = value.to(device)
    if not cfg:
        if kwargs.pop("true_cfg_scale", None) is None:
            kwargs["guidance_scale"] = 1.0
    kwargs.update(num_inference_steps=steps, output_type=output_type, return_dict=False,
                  generator=torch.Generator().manual_seed(seed + 1))
    kwargs.update(overrides)
    return kwargs


def spec_for(pipe) -> PipelineSpec | None:
    """The entry of :data:`PIPELINES` for a pipeline object of that class, if any."""
    return next((spec for spec in PIPELINES.values() if spec.pipeline_cls == type(pipe).__name__), None)


def _spec(name: str) -> PipelineSpec:
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}: choose one of {', '.join(PIPELINES)}")
    return PIPELINES[name]
