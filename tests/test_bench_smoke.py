"""The benchmark's tiny preset, run once as users run it (``bench/run.py all --preset tiny``, on Flux): it finishes,
prints its tables, writes its plots, and its JSON holds every number the README quotes, with the compile counts
of ``test_counts`` (here measured with inductor, in fresh processes with cold caches)."""

import json
import os
import subprocess
import sys

import pytest

from test_counts import HOOK_COUNTS, fbc_counts

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ("steps", "compile", "thresholds", "kernel")
VARIANTS = ("plain", "hook_compile", "hook_regional", "fbc")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, os.path.join("bench", "run.py"), "all", "--preset", "tiny", "--models", "flux",
         "--out", str(out), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = {}
    for suite in SUITES:
        with open(out / f"{suite}-tiny.json") as f:
            results[suite] = json.load(f)
    return results, proc.stdout, out


def test_environment_is_recorded(bench):
    results, _, _ = bench
    for data in results.values():
        env = data["environment"]
        for key in ("torch", "diffusers", "python", "cpu", "torch_threads", "device", "dtype"):
            assert env[key] not in (None, ""), key


def test_compile_suite_fields_and_counts(bench):
    results, _, _ = bench
    flux = results["compile"]["models"]["flux"]
    for name in VARIANTS:
        row = flux["variants"][name]
        for key in ("cold_compile_s", "warm_compile_s", "cold_first_generation_s", "warm_first_generation_s",
                    "steady_generation_s"):
            assert isinstance(row[key], float) and row[key] > 0, (name, key)
        for key in ("dynamo_graphs", "pieces", "recompiles", "graph_breaks", "frames"):
            assert isinstance(row[key], int), (name, key)
        assert row["frames_compiled_in_second_generation"] == 0, name
    fbc = flux["variants"]["fbc"]
    expected = fbc_counts("flux")
    assert {k: fbc[k] for k in expected} == expected
    plain = flux["variants"]["plain"]
    assert (plain["dynamo_graphs"], plain["pieces"], plain["recompiles"], plain["graph_breaks"]) == (1, 1, 0, 0)
    hook = flux["variants"]["hook_compile"]
    assert {k: hook[k] for k in HOOK_COUNTS["flux"]} == HOOK_COUNTS["flux"]
    assert all(flux["same_decisions"].values())
    for key in ("cold_compile_over_plain", "cold_first_generation_over_hook_compile"):
        assert flux["ratios"][key] > 0


def test_steps_suite_fields(bench):
    results, _, _ = bench
    flux = results["steps"]["models"]["flux"]
    variants = flux["variants"]
    for name in VARIANTS + ("floor", "frame", "floor_frame"):
        assert variants[name]["computed_ms"] > 0, name
    for name in ("hook_compile", "hook_regional", "fbc"):
        row = variants[name]
        assert row["skipped_ms"] > 0 and row["loop_s"] > 0 and 0 < row["skip_rate"] < 1, name
        assert row["checks"]["computed_bad"] == row["checks"]["skipped_bad"] == 0
    assert all(flux["same_decisions"].values())
    for key in ("floor_over_plain", "skipped_over_floor", "skipped_over_plain", "computed_over_plain",
                "skipped_over_computed", "skipped_over_hook_compile_skipped", "hook_compile_skipped_over_skipped",
                "loop_speedup_over_plain", "loop_speedup_over_hook_compile", "loop_speedup_over_hook_regional"):
        assert flux["ratios"][key] > 0, key
    # Dynamo's frame alone runs none of the model: it costs less than the floor's whole step.
    assert 0 < variants["frame"]["computed_ms"] < variants["floor"]["computed_ms"]
    assert isinstance(flux["ratios"]["frame_extra_over_floor"], float)


def test_thresholds_suite_fields(bench):
    results, _, _ = bench
    flux = results["thresholds"]["models"]["flux"]
    assert flux["plain_generation_s"] > 0
    rows = {(row["variant"], row["threshold"]): row for row in flux["rows"]}
    assert rows[("fbc", 0.0)]["skip_rate"] == 0.0
    assert rows[("fbc", 0.32)]["skip_rate"] > 0
    assert all(flux["same_decisions"].values())


def test_kernel_suite_skips_without_gpu(bench):
    results, _, _ = bench
    import torch

    if torch.cuda.is_available():
        assert results["kernel"]["rows"]
    else:
        assert results["kernel"]["skipped"]


def test_tables_and_plots(bench):
    _, stdout, out = bench
    for suite in ("steps", "compile", "thresholds"):
        assert f"## {suite}" in stdout
        assert (out / f"{suite}-tiny.png").stat().st_size > 1000
    assert "| variant |" in stdout
