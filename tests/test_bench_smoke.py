"""The benchmark's tiny preset, run once as users run it (``bench/run.py all --preset tiny``, on Flux): it finishes,
prints its tables, writes its plots, and its JSON holds every number docs/benchmarks.md quotes, with the compile
counts that ``test_counts`` pins (here measured with inductor, in fresh processes with cold caches). Nothing here
compares timings with each other, so a busy machine makes it slower, not wrong.

It also checks that docs/benchmarks.md is what ``bench/run.py report`` writes from bench/results/*.json."""

import json
import os
import subprocess
import sys

import pytest

import zoo
from helpers import HOOK_COUNTS, pieces

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ("steps", "compile", "thresholds", "kernel")
VARIANTS = ("plain", "hook_compile", "hook_regional", "fbc")
COUNTED = ("graphs", "pieces", "frames", "recompiles", "graph_breaks", "frames_given_up")
# About 6 minutes on 2 idle cores, mostly the compile suite's 8 cold and warm compiles; far more when shared.
TIMEOUT_S = 3600


def _run_bench(*args, timeout=TIMEOUT_S):
    return subprocess.run([sys.executable, os.path.join("bench", "run.py"), *args], cwd=ROOT,
                          env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    proc = _run_bench("all", "--preset", "tiny", "--models", "flux", "--out", str(out), "--no-progress")
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
        for key in ("torch", "diffusers", "python", "cpu", "torch_threads", "device", "dtype", "date"):
            assert env[key] not in (None, ""), key


def test_compile_suite_counts_are_the_pinned_ones(bench):
    results, _, _ = bench
    flux = results["compile"]["models"]["flux"]
    for name in VARIANTS:
        row = flux["variants"][name]
        for key in ("cold_compile_s", "warm_compile_s", "cold_first_generation_s", "warm_first_generation_s",
                    "steady_generation_s"):
            assert isinstance(row[key], float) and row[key] > 0, (name, key)
        assert row["frames_compiled_in_second_generation"] == 0, name
        assert row["counts_identical_across_runs"], name
    counts = {name: {key: flux["variants"][name][key] for key in COUNTED} for name in VARIANTS}
    assert counts["fbc"] == dict(graphs=1, pieces=pieces(zoo.SEED["flux"]), frames=1, recompiles=0, graph_breaks=0,
                                 frames_given_up=0)
    assert counts["plain"] == dict(graphs=1, pieces=1, frames=1, recompiles=0, graph_breaks=0, frames_given_up=0)
    assert counts["hook_compile"] == HOOK_COUNTS["flux"]
    assert flux["variants"]["fbc"]["fbc"].get("fallbacks", 0) == 0
    assert all(flux["same_decisions"].values()) and all(flux["same_decisions_first_generation"].values())
    for key in ("cold_compile_over_plain", "warm_compile_over_plain", "cold_first_generation_over_hook_compile"):
        assert flux["ratios"][key] > 0


def test_steps_suite_fields(bench):
    results, _, _ = bench
    flux = results["steps"]["models"]["flux"]
    variants = flux["variants"]
    for name in VARIANTS + ("floor", "frame", "floor_frame"):
        assert variants[name]["computed_ms"] > 0, name
        assert "peak_mib" not in variants[name], "no peak memory is measured on CPU"
    decisions = {}
    for name in ("hook_compile", "hook_regional", "fbc"):
        row = variants[name]
        assert row["skipped_ms"] > 0 and row["loop_s"] > 0 and 0 < row["skip_rate"] < 1, name
        assert row["checks"]["computed_bad"] == row["checks"]["skipped_bad"] == 0, name
        assert row["checks"]["computed_ok"] > 0 and row["checks"]["skipped_ok"] > 0, name
        assert row["cache_state_mib"] > 0, name
        decisions[name] = row["decisions"]
    assert decisions["hook_compile"] == decisions["hook_regional"] == decisions["fbc"]
    assert all(flux["same_decisions"].values())
    for key in ("floor_over_plain", "skipped_over_floor_and_frame", "skipped_over_plain", "computed_over_plain",
                "skipped_over_computed", "skipped_over_hook_compile_skipped", "hook_compile_skipped_over_skipped",
                "loop_speedup_over_plain", "loop_speedup_over_hook_compile", "loop_speedup_over_hook_regional"):
        assert flux["ratios"][key] > 0, key
    assert isinstance(flux["ratios"]["frame_extra_ms"], float)
    assert flux["warmup_counts"]["graphs"] > 0


def test_thresholds_suite_fields(bench):
    results, _, _ = bench
    flux = results["thresholds"]["models"]["flux"]
    assert flux["plain_generation_s"] > 0
    rows = {(row["variant"], row["threshold"]): row for row in flux["rows"]}
    assert rows[("fbc", 0.0)]["skip_rate"] == 0.0
    assert rows[("fbc", 0.32)]["skip_rate"] > 0
    assert rows[("fbc", 0.32)]["decisions"] == rows[("hook_compile", 0.32)]["decisions"]
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
    assert "| variant |" in stdout and "skipped / (floor + frame)" in stdout


def test_docs_are_written_from_the_results():
    proc = _run_bench("report", "--check", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
