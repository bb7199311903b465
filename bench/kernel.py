"""How close the fused residual_diff gets to the memory bandwidth a plain copy reaches.

The guard is memory-bound, so the ceiling is the device-to-device copy bandwidth of the
same bytes, not a FLOP count; `fraction_of_copy` is the number to watch.
"""

import statistics

import torch

_MB = 2**20


def _median_ms(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for start, end in zip(starts, ends):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def run_kernel_bench(
    sizes_mb=(64, 256, 1024),
    dtypes=(torch.bfloat16, torch.float16, torch.float32),
    warmup: int = 10,
    iters: int = 50,
) -> list[dict]:
    """One row per (size, dtype); `size_mb` is the size of ONE input (the kernel reads two).

    `eager_ms` is the eager expression upcast to float32, the same numerics as the kernel;
    `eager_raw_ms` is the same expression in the input dtype, which reads fewer bytes but
    rounds the difference to the input dtype.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("kernel benchmark needs a CUDA GPU")
    from triton.runtime.interpreter import InterpretedFunction

    from fbc_compile.kernels import residual_diff_triton
    from fbc_compile.kernels.residual_diff import _partial_sums_kernel

    if isinstance(_partial_sums_kernel, InterpretedFunction):
        raise RuntimeError("kernel benchmark needs compiled kernels: unset TRITON_INTERPRET")

    def eager_fp32(a, b):
        b = b.float()
        return (a.float() - b).abs().mean() / b.abs().mean()

    def eager_raw(a, b):
        return (a - b).abs().mean() / b.abs().mean()

    rows = []
    for size_mb in sizes_mb:
        for dtype in dtypes:
            n = size_mb * _MB // torch.empty((), dtype=dtype).element_size()
            a = torch.randn(n, device="cuda", dtype=dtype)
            b = a + 0.1 * torch.randn(n, device="cuda", dtype=dtype)
            dst = torch.empty_like(a)
            kernel_ms = _median_ms(lambda: residual_diff_triton(a, b), warmup, iters)
            eager_ms = _median_ms(lambda: eager_fp32(a, b), warmup, iters)
            eager_raw_ms = _median_ms(lambda: eager_raw(a, b), warmup, iters)
            copy_ms = _median_ms(lambda: dst.copy_(a), warmup, iters)
            # Both cases move 2 * size bytes: two inputs read, or one read plus one write.
            moved_gb = 2 * size_mb * _MB / 1e9
            kernel_gbps = moved_gb / (kernel_ms / 1e3)
            copy_gbps = moved_gb / (copy_ms / 1e3)
            rows.append(
                dict(
                    size_mb=size_mb,
                    dtype=str(dtype).removeprefix("torch."),
                    kernel_ms=kernel_ms,
                    eager_ms=eager_ms,
                    eager_raw_ms=eager_raw_ms,
                    kernel_gbps=kernel_gbps,
                    copy_gbps=copy_gbps,
                    fraction_of_copy=kernel_gbps / copy_gbps,
                    speedup_over_eager=eager_ms / kernel_ms,
                    speedup_over_eager_raw=eager_raw_ms / kernel_ms,
                )
            )
            del a, b, dst
            torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    for row in run_kernel_bench():
        print(
            " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
