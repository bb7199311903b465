"""The fused guard arithmetic as two Triton kernels: a deterministic two-stage reduction.

Eager PyTorch reads `r` and `r_prev` for the subtraction, writes and re-reads the
difference, then reads `r_prev` again for the denominator: about three times the
bytes this needs. The kernels read each input once and keep both sums in float32
(float64 for float64 inputs).

Determinism: stage 1 gives every program a contiguous chunk and writes its two partial
sums to a buffer (no atomics); stage 2 is one program that sums the partials and
divides. The chunking depends only on `numel`, so the same inputs give the same bits on
every run (and on every GPU).

Interpretation: `@triton.jit` reads `TRITON_INTERPRET` when this module is imported, so
set `TRITON_INTERPRET=1` before the first `import fbc_compile` to run the kernels on CPU
tensors (the tests' conftest does).
"""

import torch
import triton
import triton.language as tl

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


def launch(current: torch.Tensor, previous: torch.Tensor, wrap, divide: bool) -> torch.Tensor:
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

