"""The cache guard's arithmetic, `mean|r - r_prev| / mean|r_prev|`, as one fused pass.

Eager PyTorch reads `r` and `r_prev` for the subtraction, writes and re-reads the
difference, then reads `r_prev` again for the denominator: about three times the
bytes this needs. The kernel reads each input once and keeps both sums in float32
(float64 for float64 inputs).

Two ops: `residual_diff` returns the ratio; `residual_sums` returns the two sums,
`sum|r - r_prev|` and `sum|r_prev|`, for a residual sharded over ranks (context
parallelism), whose sums are all-reduced before they are divided.

Determinism: the reduction is a fixed two-stage tree. Stage 1 gives every program a
contiguous chunk and writes its two partial sums to a float32 buffer (no atomics);
stage 2 is one program that sums the partials and divides. The chunking depends only
on `numel`, so the same inputs give the same bits on every run (and on every GPU).

Interpretation: `@triton.jit` reads `TRITON_INTERPRET` when this module is imported,
so set `TRITON_INTERPRET=1` before the first `import fbc_compile.kernels` to run the
kernels on CPU tensors (the tests do this in tests/conftest.py).
"""

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

# Sized for occupancy, since the kernel is memory-bound: 2048 elements per iteration over 8
# warps is 8 per thread per input (one or two 16-byte loads each) and, per ptxas for sm_90,
# 32 registers, so 8 programs fit on an SM with every thread slot used. Programs are
# persistent and capped at 1024, which an H200's 132 SMs * 8 hold at once: a 64 MB-1 GB
# input is a single wave, each program looping over its chunk, and stage 2 is one
# 1024-wide load. (4096 elements needs 48-64 registers: half the programs resident, two
# waves.) The cap is a constant, not the SM count, so the bits do not depend on the GPU.
# Loads are 16-byte vectors when numel is a multiple of 16 (Triton specializes on that),
# which any transformer hidden size gives.
BLOCK = 2048
MAX_PROGRAMS = 1024
NUM_WARPS = 8


@triton.jit
def _partial_sums_kernel(
    current_ptr, previous_ptr, partials_ptr, n, blocks_per_program, num_programs,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    # int64 so inputs past 2**31 elements do not wrap.
    start = pid.to(tl.int64) * blocks_per_program * BLOCK
    acc_diff = tl.zeros([BLOCK], dtype=ACC)
    acc_prev = tl.zeros([BLOCK], dtype=ACC)
    for i in range(blocks_per_program):
        offsets = start + i * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        c = tl.load(current_ptr + offsets, mask=mask, other=0.0).to(ACC)
        p = tl.load(previous_ptr + offsets, mask=mask, other=0.0).to(ACC)
        acc_diff += tl.abs(c - p)
        acc_prev += tl.abs(p)
    tl.store(partials_ptr + pid, tl.sum(acc_diff, axis=0))
    tl.store(partials_ptr + num_programs + pid, tl.sum(acc_prev, axis=0))


@triton.jit
def _finish_kernel(partials_ptr, out_ptr, num_programs, MAX_PROGRAMS: tl.constexpr, DIVIDE: tl.constexpr):
    offsets = tl.arange(0, MAX_PROGRAMS)
    mask = offsets < num_programs
    diff = tl.sum(tl.load(partials_ptr + offsets, mask=mask, other=0.0), axis=0)
    prev = tl.sum(tl.load(partials_ptr + num_programs + offsets, mask=mask, other=0.0), axis=0)
    if DIVIDE:
        # IEEE division (not the approximate default): x/0 -> inf and 0/0 -> nan, so a zero
        # or non-finite residual never reads as a small finite change.
        tl.store(out_ptr, tl.math.div_rn(diff.to(tl.float32), prev.to(tl.float32)))
    else:
        tl.store(out_ptr, diff.to(tl.float32))
        tl.store(out_ptr + 1, prev.to(tl.float32))


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


def _launch(current: torch.Tensor, previous: torch.Tensor, wrap, divide: bool) -> torch.Tensor:
    # Non-contiguous inputs are copied: the kernel indexes flat memory. The residual the
    # guard passes is contiguous, where .contiguous() is a no-op.
    current = current.contiguous()
    previous = previous.contiguous()
    n = current.numel()
    num_blocks = triton.cdiv(n, BLOCK)
    blocks_per_program = triton.cdiv(num_blocks, MAX_PROGRAMS)
    num_programs = triton.cdiv(num_blocks, blocks_per_program)
    accumulate = torch.float64 if current.dtype == torch.float64 else torch.float32
    partials = torch.empty(2 * num_programs, dtype=accumulate, device=current.device)
    out = torch.empty(() if divide else (2,), dtype=torch.float32, device=current.device)
    wrap(_partial_sums_kernel)[(num_programs,)](
        current, previous, partials, n, blocks_per_program, num_programs,
        BLOCK=BLOCK, ACC=tl.float64 if accumulate == torch.float64 else tl.float32, num_warps=NUM_WARPS,
    )
    wrap(_finish_kernel)[(1,)](partials, out, num_programs, MAX_PROGRAMS=MAX_PROGRAMS, DIVIDE=divide, num_warps=4)
    return out


def _sums(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    accumulate = torch.float64 if current.dtype == torch.float64 else torch.float32
    previous = previous.to(accumulate)
    return torch.stack([(current.to(accumulate) - previous).abs().sum(), previous.abs().sum()])


def _reference(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    diff, prev = _sums(current, previous)
    return (diff / prev).float()


def residual_diff_triton(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """The Triton kernels called directly, without dispatch: the interpreter tests use this."""
    check_inputs(current, previous)
    return _launch(current, previous, wrap=lambda kernel: kernel, divide=True)


def residual_sums_triton(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """``residual_sums``' Triton kernels called directly, without dispatch."""
    check_inputs(current, previous)
    return _launch(current, previous, wrap=lambda kernel: kernel, divide=False)


@triton_op("fbc_compile::residual_diff", mutates_args=())
def residual_diff(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """`sum|current - previous| / sum|previous|` (= the ratio of the means) as a 0-dim float32.

    A zero `previous` gives inf and a non-finite input gives nan or inf, so the guard
    computes rather than trusting a cache it cannot measure against. Non-contiguous inputs
    are copied with `.contiguous()` first; the residual the guard passes is contiguous,
    so that costs nothing in practice.
    """
    check_inputs(current, previous)
    # This body is also the fake kernel and, under AOT tracing, the decomposition, which
    # bypass the CPU kernel registered below; CPU tensors must not reach Triton here.
    if current.device.type == "cpu":
        return _reference(current, previous)
    return _launch(current, previous, wrap=wrap_triton, divide=True)


@residual_diff.register_kernel("cpu")
def _residual_diff_cpu(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    check_inputs(current, previous)
    return _reference(current, previous)


@triton_op("fbc_compile::residual_sums", mutates_args=())
def residual_sums(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """`[sum|current - previous|, sum|previous|]` as a float32 tensor of 2: ``residual_diff``'s two sums,
    for a residual sharded over ranks, whose sums are added across ranks before the division."""
    check_inputs(current, previous)
    if current.device.type == "cpu":
        return _sums(current, previous).float()
    return _launch(current, previous, wrap=wrap_triton, divide=False)


@residual_sums.register_kernel("cpu")
def _residual_sums_cpu(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    check_inputs(current, previous)
    return _sums(current, previous).float()
