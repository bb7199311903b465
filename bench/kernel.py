"""How close the fused residual_diff gets to the memory bandwidth a plain copy reaches.

The guard is memory-bound, so the ceiling is the device-to-device copy bandwidth of the same bytes, not a FLOP
count; ``fraction_of_copy`` is the number to watch. Timed with ``triton.testing.do_bench`` (medians; it clears
the L2 cache before each run, so every run reads from HBM as the guard does on a real model's residual).
"""

import torch

_MB = 2**20


def run_kernel_bench(sizes_mb=(64, 256, 1024), dtypes=(torch.bfloat16, torch.float16, torch.float32)) -> list[dict]:
    """One row per (size, dtype); ``size_mb`` is the size of ONE input (the kernel reads two).

    ``eager_ms`` is the eager expression upcast to float32, the same numerics as the kernel; ``eager_raw_ms`` is
    the same expression in the input dtype, which reads fewer bytes but rounds the difference to the input dtype.
    """
    from triton.runtime.interpreter import InterpretedFunction
    from triton.testing import do_bench

    from fbc_compile.kernels import residual_diff_triton
    from fbc_compile.kernels.triton_sums import _partial_sums_kernel

    if not torch.cuda.is_available():
        raise RuntimeError("kernel benchmark needs a CUDA GPU")
    if isinstance(_partial_sums_kernel, InterpretedFunction):
        raise RuntimeError("kernel benchmark needs compiled kernels: unset TRITON_INTERPRET")

    def eager_fp32(a, b):
        b = b.float()
        return (a.float() - b).abs().mean() / b.abs().mean()

    def eager_raw(a, b):
        return (a - b).abs().mean() / b.abs().mean()

    def ms(fn) -> float:
        return do_bench(fn, return_mode="median")

    rows = []
    for size_mb in sizes_mb:
        for dtype in dtypes:
            n = size_mb * _MB // torch.empty((), dtype=dtype).element_size()
            a = torch.randn(n, device="cuda", dtype=dtype)
            b = a + 0.1 * torch.randn(n, device="cuda", dtype=dtype)
            dst = torch.empty_like(a)
            kernel_ms = ms(lambda: residual_diff_triton(a, b))
            eager_ms = ms(lambda: eager_fp32(a, b))
            eager_raw_ms = ms(lambda: eager_raw(a, b))
            copy_ms = ms(lambda: dst.copy_(a))
            moved_gb = 2 * size_mb * _MB / 1e9  # both move 2 x size: two inputs read, or one read and one write
            kernel_gbps, copy_gbps = moved_gb / (kernel_ms / 1e3), moved_gb / (copy_ms / 1e3)
            rows.append(dict(
                size_mb=size_mb, dtype=str(dtype).removeprefix("torch."), kernel_ms=kernel_ms, eager_ms=eager_ms,
                eager_raw_ms=eager_raw_ms, copy_ms=copy_ms, kernel_gbps=kernel_gbps, copy_gbps=copy_gbps,
                fraction_of_copy=kernel_gbps / copy_gbps, speedup_over_eager=eager_ms / kernel_ms,
                speedup_over_eager_raw=eager_raw_ms / kernel_ms,
            ))
            del a, b, dst
            torch.cuda.empty_cache()
    return rows
