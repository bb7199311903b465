"""Fused kernels. Importing this defines the `fbc_compile::residual_diff` and `fbc_compile::residual_sums` ops."""

from .residual_diff import residual_diff, residual_diff_triton, residual_sums, residual_sums_triton

__all__ = ["residual_diff", "residual_diff_triton", "residual_sums", "residual_sums_triton"]
