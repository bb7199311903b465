"""``python -m fbc_compile demo``: First Block Cache on a diffusers pipeline, next to a plain ``torch.compile``.

By default the pipeline is a tiny Flux built in memory with random weights (nothing is downloaded); --model
loads a real one from a local directory or the local Hugging Face cache, never from the network. The pipeline's
transformer is compiled twice, plainly and with fbc_backend, and each is warmed up (compile time reported apart).
Then the two run timed generations of the same seed, alternating (the fastest of --repeats is reported). The demo
prints the cache's per-step decisions and a summary (skip rate, seconds per generation, speedup, graphs compiled,
recompilations) and saves the cached generation's image.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from .backend import compilation_counter, fbc_backend

__all__ = ["add_arguments", "run", "DemoResult"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_OUTPUT = Path("demo-output") / "fbc_demo.png"
# The tiny random-weight Flux's block-0 residual changes by 0.34-0.49 from one step to the next (its timestep
# embedding is untrained, so every frequency of the sinusoidal embedding moves it), where a trained model's moves
# by a few percent: 0.4 skips about half of its steps. For a real model (--model) 0.1 is a usual starting point.
TINY_THRESHOLD = 0.4
MODEL_THRESHOLD = 0.1

# The demo's tiny Flux: big enough that the blocks dominate a step on a CPU (so skipping them shows), small
# enough that compiling twice and 4 generations of 28 steps take a couple of minutes on 2 cores.
DEMO_TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=8, attention_head_dim=16,
                        num_attention_heads=16, joint_attention_dim=32, pooled_projection_dim=16,
                        guidance_embeds=True, axes_dims_rope=(4, 6, 6))
# A VAE with 4 latent channels (Flux packs 2x2 of them into 16 per token) and 3 levels: a 128 px image is 32x32
# latents, 256 tokens.
DEMO_VAE = dict(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=1, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
DEMO_SIZE = 128
PROMPT_TOKENS = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"skip the blocks after the first when block 0's residual changed by at most this "
                             f"fraction since the last computed step; 0 never skips (default {TINY_THRESHOLD} for "
                             f"the tiny random-weight model, {MODEL_THRESHOLD} with --model)")
    parser.add_argument("--steps", type=int, default=28, help="denoising steps per generation (default 28)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None,
                        help="weights and activations (default: bfloat16 on cuda, float32 otherwise)")
    parser.add_argument("--model", metavar="PATH",
                        help="a diffusers pipeline directory, or a Hugging Face id already in the local cache "
                             "(nothing is downloaded); default: a tiny Flux built in memory")
    parser.add_argument("--prompt", default="a photo of a cat in the snow",
                        help="prompt, for a --model pipeline that has its text encoders")
    parser.add_argument("--height", type=int, default=None, help="image height (default: 128 for the tiny Flux, "
                                                                 "the pipeline's default for --model)")
    parser.add_argument("--width", type=int, default=None, help="image width (default: as --height)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to save the cached generation's image (default {DEFAULT_OUTPUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights (tiny model) and the latents")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed generations of each kind, alternating; the fastest is reported (default 3)")


@dataclasses.dataclass
class DemoResult:
    decisions: dict  # context name -> list of (computed, diff)
    skip_rate: float
    seconds_plain: float
    seconds_fbc: float
    compile_seconds_plain: float
    compile_seconds_fbc: float
    graphs_plain: int
    graphs_fbc: int
    recompiles: int
    image_path: Path | None
    spread: float = 0.0  # the largest (slowest - fastest) / fastest over one kind's timed generations

    @property
    def speedup(self) -> float:
        return self.seconds_plain / self.seconds_fbc


#: Repeats of one kind further apart than this say the machine was busy: the speedup is then not to be trusted.
TRUSTED_SPREAD = 0.15


class DemoError(Exception):
    """A problem the user can fix (a missing model, an unusable option); printed without a traceback."""


def load_pipeline(model: str, dtype: torch.dtype, device):
    """A diffusers pipeline from a local directory or the local Hugging Face cache; never downloads.

    Components saved as absent (``save_pretrained`` of a pipeline built without text encoders writes them as
    ``[null, null]``) are passed as ``None``, which ``from_pretrained`` otherwise refuses.
    """
    import json

    from diffusers import DiffusionPipeline

    folder = _local_folder(model)
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise DemoError(f"--model {model!r}: {folder} has no model_index.json, so it is not a diffusers pipeline "
                        f"(write one with `pipeline.save_pretrained(path)`)")
    index = json.loads(index_file.read_text())
    absent = {name: None for name, entry in index.items()
              if not name.startswith("_") and isinstance(entry, list) and entry[:1] == [None]}
    try:
        with warnings.catch_warnings():  # newer diffusers prefer `dtype=`; `torch_dtype=` works in every release
            warnings.simplefilter("ignore", FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True, **absent)
    except (OSError, ValueError, TypeError) as error:
        raise DemoError(f"--model {model!r}: cannot load the pipeline in {folder}: {_first_line(error)}") from None
    if getattr(pipe, "transformer", None) is None:
        raise DemoError(f"--model {model!r}: {type(pipe).__name__} has no `transformer`; First Block Cache is for "
                        f"diffusion transformers")
    return pipe.to(device)


def _local_folder(model: str) -> Path:
    """``model`` as a directory, or the folder of its snapshot in the local Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as error:  # not a repo id, or not in the cache: both mean "not here"
        looks_like_id = model.count("/") == 1 and not model.startswith(("/", ".", "~"))
        if not looks_like_id:
            raise DemoError(f"--model {model!r}: no such directory (and not a Hugging Face id). Nothing is "
                            f"downloaded: pass a directory written by `pipeline.save_pretrained(path)`, or the id "
                            f"of a model already in the local Hugging Face cache") from None
        raise DemoError(
            f"--model {model!r} is not a directory and not in the local Hugging Face cache ({_hf_cache()}). "
            f"Nothing is downloaded: fetch it first (e.g. `hf download {model}`), or pass a directory written by "
            f"`pipeline.save_pretrained(path)`. ({type(error).__name__})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _hf_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return HF_HUB_CACHE
    except ImportError:
        return "~/.cache/huggingface/hub"


def tiny_flux_pipeline(dtype: torch.dtype, device, seed: int):
    """A FluxPipeline built in memory with random weights: no text encoders (prompt embeddings are passed)."""
    import diffusers

    torch.manual_seed(seed)
    transformer = diffusers.FluxTransformer2DModel(**DEMO_TRANSFORMER).eval()
    torch.manual_seed(seed + 1)
    vae = diffusers.AutoencoderKL(**DEMO_VAE).eval()
    components = dict.fromkeys(diffusers.FluxPipeline._get_signature_keys(diffusers.FluxPipeline)[0])
    components.update(transformer=transformer, vae=vae, scheduler=diffusers.FlowMatchEulerDiscreteScheduler())
    return diffusers.FluxPipeline(**components).to(device, dtype)


def generation_kwargs(pipe, args, tiny: bool) -> dict:
    """Arguments of one generation: the prompt, or random prompt embeddings for a Flux pipeline without text
    encoders (the tiny one, or a saved one)."""
    size = {key: value for key, value in (("height", args.height), ("width", args.width or args.height))
            if value is not None}
    if tiny:
        size = {"height": DEMO_SIZE, "width": DEMO_SIZE, **size}
    kwargs = dict(num_inference_steps=args.steps, output_type="pil", return_dict=True,
                  generator=torch.Generator().manual_seed(args.seed + 1), **size)
    if getattr(pipe, "text_encoder", None) is not None:
        return dict(kwargs, prompt=args.prompt)
    if type(pipe).__name__ != "FluxPipeline":
        raise DemoError(f"{type(pipe).__name__} has no text encoder, and the demo makes prompt embeddings only for "
                        f"FluxPipeline")
    config, gen = pipe.transformer.config, torch.Generator().manual_seed(args.seed)
    embeddings = dict(prompt_embeds=torch.randn(1, PROMPT_TOKENS, config.joint_attention_dim, generator=gen),
                      pooled_prompt_embeds=torch.randn(1, config.pooled_projection_dim, generator=gen))
    embeddings = {name: value.to(pipe.device, pipe.transformer.dtype) for name, value in embeddings.items()}
    return dict(kwargs, **embeddings, max_sequence_length=PROMPT_TOKENS)


def _first_image(output):
    """The first image (or first frame of the first video) of a pipeline output, as a PIL image."""
    from PIL import Image

    images = getattr(output, "images", None)
    if images is None:
        images = getattr(output, "frames", None)
    while isinstance(images, (list, tuple)) or (torch.is_tensor(images) and images.dim() > 3) or (
            hasattr(images, "ndim") and images.ndim > 3):
        images = images[0]
    if isinstance(images, Image.Image):
        return images
    array = images.float().cpu().numpy() if torch.is_tensor(images) else images
    return Image.fromarray((array.clip(0, 1) * 255).round().astype("uint8"))


def _recompiles(metrics) -> list[str]:
    """Reasons of the recompilations in ``metrics``: compiles of a frame already compiled (compile id "f/k", k > 0).

    The first compile of the shared transformer's ``forward`` for the second backend is such an id too (dynamo's
    BACKEND_MATCH guard), but it is that backend's first compile, not a recompilation: it is left out.
    """
    reasons = []
    for metric in metrics:
        frame_compile = str(metric.compile_id or "0/0").strip("[]").split("/")[-1]
        reason = metric.recompile_reason or ""
        if frame_compile not in ("0", "") and "BACKEND_MATCH" not in reason:
            reasons.append(reason.strip().splitlines()[0] if reason.strip() else "(no reason recorded)")
    return reasons


def _generate(pipe, kwargs: dict, label: str, backend=None, steps: int = 0, quiet: bool = False):
    """One generation with a progress bar (driven by the pipeline's step callback); returns (output, seconds)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=f"{label:>6}", unit="step", disable=quiet or steps == 0, file=sys.stdout,
               dynamic_ncols=True)

    def on_step_end(_pipe, step, _timestep, _tensors):
        if backend is not None:
            skips = sum(stats.skips for stats in backend.stats.values())
            calls = sum(stats.calls for stats in backend.stats.values())
            bar.set_postfix_str(f"skipped {skips}/{calls} calls", refresh=False)
        bar.update(1)
        return {}

    generator = kwargs["generator"]  # the same starting noise for every generation
    kwargs = dict(kwargs, generator=torch.Generator(generator.device).manual_seed(generator.initial_seed()))
    with warnings.catch_warnings():
        # The plain generations call the transformer fbc compiled through another wrapper, on purpose: the
        # backend's warning that its graph is not reached is true and expected here.
        warnings.filterwarnings("ignore", message=r"fbc_compile: the model's last \d+ calls never reached")
        start = time.perf_counter()
        output = pipe(**kwargs, callback_on_step_end=on_step_end)
        seconds = time.perf_counter() - start
    bar.close()
    return output, seconds


def _print_decisions(backend, out) -> None:
    print("\nper-step decisions (C = computed, S = skipped; the number is the relative change of block 0's "
          "residual since the last computed step):", file=out)
    for name, stats in backend.stats.items():
        cells = [f"{i + 1:>3} {'C' if computed else 'S'} {'  -  ' if diff is None else f'{diff:.3f}'}"
                 for i, (computed, diff) in enumerate(zip(stats.decisions, stats.diffs))]
        print(f"  context {name!r}:", file=out)
        for row in range(0, len(cells), 7):
            print("    " + "   ".join(cells[row:row + 7]), file=out)


def run(args: argparse.Namespace, out=sys.stdout) -> DemoResult:
    """Run the demo with parsed arguments; prints its report to ``out`` and returns its numbers."""
    from torch._dynamo.utils import counters, get_compilation_metrics

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")]
    for name in ("steps", "repeats", "height", "width"):
        value = getattr(args, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DemoError(f"--{name} must be a positive integer, got {value!r}")
    threshold = args.threshold if args.threshold is not None else MODEL_THRESHOLD if args.model else TINY_THRESHOLD
    try:
        backend = fbc_backend(threshold)
    except (TypeError, ValueError) as error:
        raise DemoError(f"--threshold: {error}") from None
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise DemoError(f"--device {device!r}: {_first_line(error)}") from None
    is_available = getattr(getattr(torch, device.type, None), "is_available", None)
    if device.type != "cpu" and not (callable(is_available) and is_available()):
        raise DemoError(f"--device {device}: no {device.type} device is available to this torch "
                        f"(torch {torch.__version__}); use --device cpu")
    _quiet_libraries()

    if args.model:
        pipe = load_pipeline(args.model, dtype, device)
        what = f"{type(pipe).__name__} from {args.model}"
    else:
        pipe = tiny_flux_pipeline(dtype, device, args.seed)
        what = "a tiny FluxPipeline built in memory (random weights, nothing downloaded)"
    pipe.set_progress_bar_config(disable=True)
    kwargs = generation_kwargs(pipe, args, tiny=not args.model)
    transformer = pipe.transformer
    blocks = sum(len(m) for m in transformer.children() if isinstance(m, torch.nn.ModuleList))
    params = sum(p.numel() for p in transformer.parameters()) / 1e6
    print(f"fbc_compile demo: {what}\n  {type(transformer).__name__}: {blocks} blocks, {params:.1f}M parameters; "
          f"{args.steps} steps on {device} in {str(dtype).removeprefix('torch.')}; threshold {threshold}", file=out)

    # Both compiled wrappers share the one transformer (no second copy of the weights); dynamo keeps a compiled
    # entry per backend and picks the matching one on each call.
    compiled = {"plain": torch.compile(transformer), "fbc": torch.compile(transformer, backend=backend)}
    warmup = dict(kwargs, num_inference_steps=2)
    compile_seconds, graphs = {}, {}
    for label, title in (("plain", "plain torch.compile"), ("fbc", "fbc_backend")):
        pipe.transformer = compiled[label]
        before = counters["stats"]["unique_graphs"]
        print(f"compiling {title} (a 2-step warm-up generation) ...", end=" ", flush=True, file=out)
        _, compile_seconds[label] = _generate(pipe, warmup, label, quiet=True)
        graphs[label] = counters["stats"]["unique_graphs"] - before
        print(f"{compile_seconds[label]:.1f} s, {graphs[label]} graph(s)", file=out)

    seconds = {"plain": [], "fbc": []}
    outputs = {}
    for repeat in range(args.repeats):
        if repeat == 1:
            print(f"timing {args.repeats - 1} more generation(s) of each ...", file=out)
        for label in ("plain", "fbc"):
            pipe.transformer = compiled[label]
            if label == "fbc":
                backend.reset()  # only this generation's decisions in the stats (the cached tensors are gone already)
            output, took = _generate(pipe, kwargs, label, backend=backend if label == "fbc" else None,
                                     steps=args.steps, quiet=repeat > 0)
            seconds[label].append(took)
            outputs.setdefault(label, output)
    pipe.transformer = transformer
    recompiles = _recompiles(get_compilation_metrics())

    _print_decisions(backend, out)
    calls = sum(s.calls for s in backend.stats.values())
    skips = sum(s.skips for s in backend.stats.values())
    image, image_plain = _first_image(outputs["fbc"]), _first_image(outputs["plain"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.output)
    import numpy as np

    pixel_diff = float(np.abs(np.asarray(image, np.float32) - np.asarray(image_plain, np.float32)).mean())
    result = DemoResult({name: list(zip(s.decisions, s.diffs)) for name, s in backend.stats.items()},
                        skips / calls if calls else 0.0, min(seconds["plain"]), min(seconds["fbc"]),
                        compile_seconds["plain"], compile_seconds["fbc"], graphs["plain"], graphs["fbc"],
                        len(recompiles), args.output,
                        max(max(times) / min(times) - 1 for times in seconds.values()))
    best = {label: f"fastest of {args.repeats}, spread {max(times) / min(times) - 1:.0%}" if args.repeats > 1
            else "one run" for label, times in seconds.items()}
    if args.repeats == 1:
        trust = "one run of each: pass --repeats 3 or more to see how far the timings can be trusted"
    elif result.spread > TRUSTED_SPREAD:
        trust = (f"NOT to be trusted: repeats of one kind differ by up to {result.spread:.0%} (the machine is busy); "
                 "rerun on an idle machine")
    else:
        trust = f"repeats agree within {result.spread:.0%}"
    print(f"\nsummary\n"
          f"  skip rate             : {skips}/{calls} transformer calls skipped the blocks after the first "
          f"({result.skip_rate:.0%})\n"
          f"  plain torch.compile   : {result.seconds_plain:.2f} s per generation ({best['plain']}); "
          f"compile + warm-up {compile_seconds['plain']:.1f} s\n"
          f"  fbc_backend           : {result.seconds_fbc:.2f} s per generation ({best['fbc']}); "
          f"compile + warm-up {compile_seconds['fbc']:.1f} s\n"
          f"  speedup               : {result.speedup:.2f}x on {torch.get_num_threads()} torch thread(s); {trust}\n"
          f"  dynamo graphs compiled: plain {graphs['plain']}, fbc {graphs['fbc']} (fbc_compile: "
          f"{compilation_counter['split_graphs']} split at block 0, {compilation_counter['pieces']} pieces compiled)\n"
          f"  recompilations        : {len(recompiles)}" + "".join(f"\n    - {r}" for r in recompiles) + "\n"
          f"  image vs plain        : mean |difference| {pixel_diff:.2f} / 255 per pixel channel\n"
          f"  image saved to        : {args.output}", file=out)
    return result


def _quiet_libraries() -> None:
    """Keep the demo's output to its own lines (diffusers and transformers log import-time notices)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass
