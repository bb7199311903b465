"""How to build one diffusers transformer with a tiny config and feed it one denoiser call.

A ``ModelSpec`` is everything a test or benchmark needs to run a denoising loop on a real diffusers class with
random weights (nothing is downloaded): the class, a config in the spirit of diffusers' own
``tests/models/transformers/`` (a few blocks, small widths), the keyword arguments of one call, which of them
carries the latents, how the timestep is passed, and what the unconditional branch of classifier-free guidance
changes.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable

import torch

__all__ = ["ModelSpec", "fill_rope_table", "randn"]


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def long_timestep(t: float, batch: int) -> torch.Tensor:
    """Integer timesteps, as DDPM/DDIM-style schedulers hand them out."""
    return torch.full((batch,), int(round(t * 999)), dtype=torch.long)


def unit_timestep(t: float, batch: int) -> torch.Tensor:
    """A float time in [0, 1] (flow-matching pipelines that pass sigma, the scheduler's timestep / 1000)."""
    return torch.full((batch,), float(t))


def fill_rope_table(model: torch.nn.Module) -> None:
    """Fill a ``rope_embedder``'s frequency table, as the first eager call would (Z-Image, Bria Fibo 2).

    The table is built lazily on the first call, inside ``with torch.device("cpu")``, a context manager dynamo
    cannot trace ("Unsupported context manager"): a model compiled before any eager call fails there, with any
    backend."""
    rope = model.rope_embedder
    if rope.freqs_cis is None:
        table = rope.precompute_freqs_cis(rope.axes_dims, rope.axes_lens, theta=rope.theta)
        rope.freqs_cis = [frequencies.to(next(model.parameters()).device) for frequencies in table]


def _zero_text(inputs: dict) -> dict:
    """The usual unconditional branch: the text embedding zeroed (an empty prompt's stand-in)."""
    return {"encoder_hidden_states": torch.zeros_like(inputs["encoder_hidden_states"])}


def _first_output(output: Any) -> torch.Tensor:
    return output[0]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One diffusers transformer at a tiny size, and how a denoising loop calls it.

    ``make_inputs(batch, generator)``: the keyword arguments of one call (``return_dict=False`` where the model
    takes it). ``latent`` names the argument a sampler updates each step; ``timestep`` the one that carries the
    step's time, made by ``make_timestep(t, batch)`` from ``t`` falling from 1 to 0 (default: a float tensor
    ``t * 1000`` of shape ``(batch,)``). ``uncond(inputs)`` gives the arguments the unconditional CFG branch
    replaces (default: ``encoder_hidden_states`` zeroed; ``None`` where the model has no condition to drop).
    ``velocity(output)`` picks the prediction out of the model's return value; it has the latent's shape.
    ``dynamo_config``: ``torch._dynamo.config`` settings the model needs to be one graph (``fullgraph=True``).
    ``fullgraph=False``: dynamo cannot make the model one graph (data-dependent code in its forward); the tests
    then expect the one graph that holds the block sequence to be split. ``unsupported``: why no graph holds it.
    ``reinit``: parameter-name patterns (``fnmatch``) re-drawn after construction, uniformly in +-1/sqrt(fan_in)
    as ``nn.Linear`` draws: some classes zero their AdaLN modulation or output projection in ``__init__``
    (adaLN-zero; trained checkpoints never are zero there), and built as-is every block is the identity and the
    output ignores its inputs, which makes a cache test meaningless. ``prepare(model)``: anything else to run
    once after building.

    What the tests expect of the model, written down from reading its code (not from the backend's pass):
    ``sequence``, the module lists that make up the main block sequence; ``carries``, for each block class of
    it, the forward arguments it carries, in the order it returns them; ``hidden``, the one of those that is the
    image (or video, or audio) stream, whose residual is measured (a block with one stream: that one); ``hook``, whether diffusers' First Block
    Cache hook handles the model as the rule says (no glue between its blocks, all its lists among the hook's
    names), so that its decisions are compared too, and ``hook_note`` what the hook does where it does not.
    """

    name: str
    model_cls: str
    config: dict
    make_inputs: Callable[[int, torch.Generator], dict]
    latent: str = "hidden_states"
    timestep: str = "timestep"
    make_timestep: Callable[[float, int], Any] = lambda t, batch: torch.full((batch,), t * 1000.0)
    uncond: Callable[[dict], dict] | None = _zero_text
    velocity: Callable[[Any], torch.Tensor] = _first_output
    dynamo_config: dict = dataclasses.field(default_factory=dict)
    fullgraph: bool = True
    unsupported: str = ""
    sequence: tuple[str, ...] = ()
    carries: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    hidden: str = "hidden_states"
    hook: bool = False
    hook_note: str = ""
    reinit: tuple[str, ...] = ()
    prepare: Callable[[torch.nn.Module], None] | None = None

    def build(self, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0):
        import diffusers

        torch.manual_seed(seed)
        model = getattr(diffusers, self.model_cls)(**self.config).eval()
        generator = torch.Generator().manual_seed(seed + 7919)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.reinit):
                    bound = 1.0 / max(param.shape[1:].numel() if param.dim() > 1 else param.numel(), 1) ** 0.5
                    param.copy_((torch.rand(param.shape, generator=generator) * 2.0 - 1.0) * bound)
        if self.prepare is not None:
            self.prepare(model)
        model.to(device)
        return model if dtype == torch.float32 else model.to(dtype)

    def inputs(self, batch: int = 1, seed: int = 0) -> dict:
        return self.make_inputs(batch, torch.Generator().manual_seed(seed))
