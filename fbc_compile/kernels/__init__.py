"""Fused kernels. Importing this defines the `fbc_compile::residual_diff` custom op."""

from .residual_diff import residual_diff, residual_diff_triton

__all__ = ["residual_diff", "residual_diff_triton"]
