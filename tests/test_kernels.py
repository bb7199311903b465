"""The fused residual_diff and residual_sums: the Triton kernels under the CPU interpreter, and the custom ops."""

import os

# Must precede the first import of fbc_compile.kernels: @triton.jit reads it then.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from fbc_compile.kernels import residual_diff, residual_diff_triton, residual_sums, residual_sums_triton  # noqa: E402
from fbc_compile.kernels.triton_sums import _partial_sums_kernel  # noqa: E402

# What counts is whether the kernels were defined under the interpreter, not the variable now.
interpreted = isinstance(_partial_sums_kernel, InterpretedFunction)
needs_interpreter = pytest.mark.skipif(
    not interpreted and not torch.cuda.is_available(),
    reason="Triton kernels need TRITON_INTERPRET=1 before import, or a GPU",
)
# The interpreter divides with numpy, which warns on x/0 and 0/0; those are the point.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# fp32 accumulation (fp64 for float64) of at most ~4*10**6 terms (2048 lanes, each a short sequential run,
# then a tree): the measured error is below 2e-7 for every case here, for all three
# dtypes, because the reference is computed in float64 from the same low-precision
# values, leaving only accumulation error. 1e-5 keeps a 50x margin.
RTOL = 1e-5

SIZES = [
    (1, DTYPES),
    (127, DTYPES),
    (2048, DTYPES),  # exactly one block
    (4096, DTYPES),
    (2**20 + 3, DTYPES),  # 513 programs, the last one masked
    (2**22 + 5, (torch.float32,)),  # past the 1024-program cap: programs loop over 3 blocks
]


def _device():
    return "cuda" if not interpreted and torch.cuda.is_available() else "cpu"


def _reference(c, p):
    return ((c.double() - p.double()).abs().sum() / p.double().abs().sum()).item()


def _pair(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, generator=g).to(dtype)
    # previous is close to current, as in the cache, so the ratio is small.
    p = (c.float() + 0.1 * torch.randn(n, generator=g)).to(dtype)
    return c.to(_device()), p.to(_device())


def _rel_err(result, ref):
    return abs(result.double().item() - ref) / abs(ref)


@needs_interpreter
@pytest.mark.parametrize(
    "n,dtype", [(n, d) for n, dtypes in SIZES for d in dtypes], ids=lambda v: str(v)
)
def test_triton_matches_float64_reference(n, dtype):
    c, p = _pair(n, dtype, seed=n)
    result = residual_diff_triton(c, p)
    assert result.shape == () and result.dtype == torch.float32 and result.device == c.device
    assert _rel_err(result, _reference(c, p)) < RTOL


def _reference_sums(c, p):
    return ((c.double() - p.double()).abs().sum().item(), p.double().abs().sum().item())


@pytest.mark.parametrize("fn", [residual_sums, pytest.param(residual_sums_triton, marks=needs_interpreter)],
                         ids=["op", "triton"])
@pytest.mark.parametrize("n,dtype", [(1, torch.float32), (4096, torch.bfloat16), (2**20 + 3, torch.float16),
                                     (2**20 + 3, torch.float64)], ids=lambda v: str(v))
def test_sums_match_float64_reference(fn, n, dtype):
    """The two sums a rank contributes under context parallelism, each to float64's value."""
    c, p = _pair(n, dtype, seed=n)
    result = fn(c, p)
    assert result.shape == (2,) and result.dtype == torch.float32
    for got, expected in zip(result.tolist(), _reference_sums(c, p)):
        assert abs(got - expected) <= RTOL * abs(expected)


@needs_interpreter
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_non_contiguous(dtype):
    g = torch.Generator().manual_seed(1)
    c = torch.randn(96, 130, generator=g).to(dtype).to(_device())
    p = torch.randn(130, 96, generator=g).to(dtype).to(_device())
    c_view, p_view = c.t()[::2, 1:], p[::2, 1:]
    assert not c_view.is_contiguous() and not p_view.is_contiguous()
    assert _rel_err(residual_diff_triton(c_view, p_view), _reference(c_view, p_view)) < RTOL


@needs_interpreter
def test_triton_deterministic():
    c, p = _pair(2**18 + 3, torch.bfloat16, seed=7)
    first = residual_diff_triton(c, p).view(torch.int32)
    for _ in range(3):
        assert torch.equal(residual_diff_triton(c, p).view(torch.int32), first)


def _edge_cases():
    ones, zeros = torch.ones(300), torch.zeros(300)
    nan_current = ones.clone()
    nan_current[123] = float("nan")
    inf_previous = ones.clone()
    inf_previous[299] = float("inf")
    return {
        "zero_previous": (ones, zeros, lambda r: r == float("inf")),
        "both_zero": (zeros, zeros, lambda r: not torch.isfinite(r)),
        "nan_current": (nan_current, ones, torch.isnan),
        "inf_previous": (ones, inf_previous, lambda r: not torch.isfinite(r)),
        "inf_current": (inf_previous, ones, lambda r: not torch.isfinite(r)),
    }


@pytest.mark.parametrize("case", list(_edge_cases()))
@pytest.mark.parametrize("path", ["op", pytest.param("triton", marks=needs_interpreter)])
def test_non_finite_and_zero(case, path):
    c, p, ok = _edge_cases()[case]
    if path == "triton":
        result = residual_diff_triton(c.to(_device()), p.to(_device()))
    else:
        result = residual_diff(c, p)
    assert ok(result), result


def _invalid():
    x = torch.randn(4, 6)
    return {
        "shape": (x, torch.randn(6, 4), ValueError, ["(4, 6)", "(6, 4)"]),
        "dtype": (x, x.half(), ValueError, ["torch.float32", "torch.float16"]),
        "empty": (torch.empty(0, 3), torch.empty(0, 3), ValueError, ["(0, 3)"]),
        "unsupported": (x.int(), x.int(), TypeError, ["torch.int32", "torch.float64", "torch.bfloat16"]),
        "device": (x, x.to("meta"), ValueError, ["cpu", "meta"]),
    }


@pytest.mark.parametrize("case", list(_invalid()))
@pytest.mark.parametrize("fn", [residual_diff, residual_diff_triton, residual_sums, residual_sums_triton],
                         ids=["op", "triton", "sums_op", "sums_triton"])
def test_invalid_inputs(case, fn):
    c, p, error, fragments = _invalid()[case]
    with pytest.raises(error) as info:
        fn(c, p)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_op_cpu_matches_reference(dtype):
    c, p = _pair(1000, dtype)
    c, p = c.cpu(), p.cpu()
    result = residual_diff(c, p)
    assert result.shape == () and result.dtype == torch.float32
    assert _rel_err(result, _reference(c, p)) < RTOL


def test_opcheck():
    c, p = _pair(1000, torch.float32)
    torch.library.opcheck(torch.ops.fbc_compile.residual_diff.default, (c.cpu(), p.cpu()))
    c16, p16 = _pair(77, torch.bfloat16)
    torch.library.opcheck(torch.ops.fbc_compile.residual_diff.default, (c16.cpu(), p16.cpu()))
    torch.library.opcheck(torch.ops.fbc_compile.residual_sums.default, (c.cpu(), p.cpu()))
    c64, p64 = _pair(77, torch.float64)
    torch.library.opcheck(torch.ops.fbc_compile.residual_diff.default, (c64.cpu(), p64.cpu()))


def test_traces_into_compiled_graph():
    def guard(current, previous, threshold):
        return residual_diff(current * 1.0, previous) < threshold

    compiled = torch.compile(guard, fullgraph=True, backend="eager")
    c, p = _pair(513, torch.float32)
    c, p = c.cpu(), p.cpu()
    torch.testing.assert_close(compiled(c, p, 0.2), guard(c, p, 0.2))
    assert compiled(c, p, 0.2).item() == (_reference(c, p) < 0.2)


def test_without_triton_the_ops_run_the_eager_arithmetic():
    """A CPU-only install has no Triton: the package imports, the ops are plain custom ops (with fake kernels, so
    inductor compiles a graph that calls them) and give the float64 reference's values."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # what `import triton` finds when it is not installed: ImportError
        import torch
        import fbc_compile
        from fbc_compile.kernels import residual_diff, residual_sums
        assert sys.modules["fbc_compile.kernels.residual_diff"].triton_sums is None
        c, p = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
        guard = torch.compile(lambda c, p: (residual_diff(c.float(), p.float()), residual_sums(c, p)), fullgraph=True)
        diff, sums = guard(c, p)
        torch.library.opcheck(torch.ops.fbc_compile.residual_diff.default, (c, p))
        print(diff.item(), *sums.tolist(), ((c - p).abs().sum() / p.abs().sum()).item(), (c - p).abs().sum().item())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    diff, sum_diff, sum_prev, expected_diff, expected_sum = map(float, proc.stdout.split())
    assert abs(diff - expected_diff) <= 1e-6 * expected_diff
    assert abs(sum_diff - expected_sum) <= 1e-6 * expected_sum and sum_prev > 0
