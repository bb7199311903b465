"""fbc-compile: First Block Cache for diffusion transformers as a torch.compile backend.

    compiled = torch.compile(transformer, backend=fbc_backend(threshold=0.1))
    compiled = torch.compile(transformer, backend="fbc", options={"threshold": 0.1})
"""

import logging

from .backend import FBCBackend, compilation_counter, fbc_backend
from .cache import ContextStats

logging.getLogger("fbc_compile").addHandler(logging.NullHandler())

__all__ = ["FBCBackend", "fbc_backend", "compilation_counter", "ContextStats"]
__version__ = "0.1.0"
