"""The cache guard's arithmetic, `mean|r - r_prev| / mean|r_prev|`, as custom ops.

Two ops: `residual_diff` returns the ratio; `residual_sums` returns the two sums,
`sum|r - r_prev|` and `sum|r_prev|`, for a residual sharded over ranks (context
parallelism), whose sums are all-reduced before they are divided.

On a GPU they run the fused Triton kernels of `triton_sums` (one pass over both
tensors), registered with `triton_op` so inductor sees into them. Triton is not a
requirement: without it (a CPU-only install) the ops are plain custom ops that run the
eager arithmetic on every device, which is also their CPU kernel.
"""

import torch

try:
    from . import triton_sums
except ImportError:  # no Triton installed
    triton_sums = None

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_inputs(current: torch.Tensor, previous: torch.Tensor) -> None:
    """Shared by every path so the guard fails the same way on CPU and GPU."""
    if current.dtype != previous.dtype:
        raise ValueError(
            f"residual_diff needs matching dtypes, got {current.dtype} and {previous.dtype}"
        )
    if current.dtype not in SUPPORTED_DTYPES:
        allowed = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"residual_diff supports {allowed}; got {current.dtype}")
    if current.shape != previous.shape:
        raise ValueError(
            f"residual_diff needs matching shapes, got {tuple(current.shape)} "
            f"and {tuple(previous.shape)}"
        )
    if current.device != previous.device:
        raise ValueError(
            f"residual_diff needs one device, got {current.device} and {previous.device}"
        )
    if current.numel() == 0:
        raise ValueError(f"residual_diff needs non-empty tensors, got shape {tuple(current.shape)}")


def _sums(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    accumulate = torch.float64 if current.dtype == torch.float64 else torch.float32
    previous = previous.to(accumulate)
    return torch.stack([(current.to(accumulate) - previous).abs().sum(), previous.abs().sum()])


def _ratio(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    diff, prev = _sums(current, previous)
    return (diff / prev).float()


def _fused(current: torch.Tensor, previous: torch.Tensor) -> bool:
    return triton_sums is not None and current.device.type != "cpu"


if triton_sums is not None:
    from torch.library import triton_op as _define_op, wrap_triton
else:
    from torch.library import custom_op as _define_op


@_define_op("fbc_compile::residual_diff", mutates_args=())
def residual_diff(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """`sum|current - previous| / sum|previous|` (= the ratio of the means) as a 0-dim float32.

    A zero `previous` gives inf and a non-finite input gives nan or inf, so the guard
    computes rather than trusting a cache it cannot measure against. Non-contiguous inputs
    are copied with `.contiguous()` first; the residual the guard passes is contiguous,
    so that costs nothing in practice.
    """
    check_inputs(current, previous)
    # With Triton this body is also the fake kernel and, under AOT tracing, the
    # decomposition, which bypass the CPU kernel registered below; CPU tensors must not
    # reach Triton here.
    if _fused(current, previous):
        return triton_sums.launch(current, previous, wrap=wrap_triton, divide=True)
    return _ratio(current, previous)


@_define_op("fbc_compile::residual_sums", mutates_args=())
def residual_sums(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """`[sum|current - previous|, sum|previous|]` as a float32 tensor of 2: ``residual_diff``'s two sums,
    for a residual sharded over ranks, whose sums are added across ranks before the division."""
    check_inputs(current, previous)
    if _fused(current, previous):
        return triton_sums.launch(current, previous, wrap=wrap_triton, divide=False)
    return _sums(current, previous).float()


@residual_diff.register_kernel("cpu")
def _residual_diff_cpu(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    check_inputs(current, previous)
    return _ratio(current, previous)


@residual_sums.register_kernel("cpu")
def _residual_sums_cpu(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    check_inputs(current, previous)
    return _sums(current, previous).float()


if triton_sums is None:  # a custom op's body is not its fake kernel, as a triton_op's is

    @residual_diff.register_fake
    def _(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        check_inputs(current, previous)
        return current.new_empty((), dtype=torch.float32)

    @residual_sums.register_fake
    def _(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        check_inputs(current, previous)
        return current.new_empty((2,), dtype=torch.float32)


def residual_diff_triton(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``residual_diff``'s Triton kernels called directly, without dispatch (the interpreter tests use this)."""
    check_inputs(current, previous)
    return triton_sums.launch(current, previous, wrap=lambda kernel: kernel, divide=True)


def residual_sums_triton(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``residual_sums``' Triton kernels called directly, without dispatch."""
    check_inputs(current, previous)
    return triton_sums.launch(current, previous, wrap=lambda kernel: kernel, divide=False)
