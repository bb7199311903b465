"""Tiny diffusers transformers for tests and benchmarks: every DiT class diffusers ships, built from small
configs with random weights (nothing is downloaded), with the inputs of one denoiser call.

``CATALOGUE`` maps a variant's name to its ``ModelSpec``; ``SEED`` holds the five models the backend was first
built on, whose factories (``seed.flux(hidden=...)``) also give the benchmark's larger sizes.
"""

from . import image_double_stream, image_single_stream, seed, video_other, video_wan
from .spec import ModelSpec

__all__ = ["CATALOGUE", "SEED", "ModelSpec"]

SEED = {name: factory() for name, factory in seed.FACTORIES.items()}
CATALOGUE = {spec.name: spec for module in (seed, image_double_stream, image_single_stream, video_wan, video_other)
             for spec in module.MODELS}
