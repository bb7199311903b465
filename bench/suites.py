"""The four suites. Each returns a JSON-able dict: ``{"models": {name: {...}}, ...}``; ``report`` renders them.

Everything that is compared is measured in one run and, where it can be, in one process with the variants
interleaved (round-robin, rotating the order each round), so that drift on a shared machine falls on all of them
alike; the numbers reported are medians and ratios of medians. Cold compile times are the exception: they need a
fresh process and an empty inductor cache per measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable

import torch

import common
from common import FRAMES, PEERS, REFERENCES, VARIANTS, Case, Preset, log, median

HERE = os.path.dirname(os.path.abspath(__file__))


def _rotations(items, rounds):
    """``rounds`` orders of ``items``, each rotated by one: every item is first (and last) equally often."""
    items = list(items)
    for r in range(rounds):
        k = r % len(items)
        yield items[k:] + items[:k]


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def _set_limits() -> None:
    # Several variants of one class live in one process; the hook variants alone compile up to ~16 frames.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 4096)


def _compare_decisions(all_decisions: dict[str, dict]) -> dict:
    """Whether every caching variant decided exactly as fbc did, call for call."""
    reference = all_decisions.get("fbc")
    out = {}
    for name, decisions in all_decisions.items():
        if name in ("fbc", "plain") or reference is None:
            continue
        out[name] = decisions == reference
    return out


def _format_decisions(decisions: dict[str, list]) -> dict[str, str]:
    return {k: "".join("?" if d is None else ("C" if d else "s") for d in v) for k, v in decisions.items()}


# ------------------------------------------------------------------------------------------------------- steps


def _release() -> None:
    """Drop the previous model's compiled code and free its memory before building the next (GPU presets hold
    one full-size model at a time)."""
    import gc

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def steps_suite(preset: Preset, progress: Callable) -> dict:
    _set_limits()
    models = {}
    for case in preset.cases:
        _release()
        models[case.name] = _steps_model(case, preset, progress)
    return {"models": models}


def _steps_model(case: Case, preset: Preset, progress: Callable) -> dict:
    device = preset.device
    common.clear_counts()
    base = common.build_model(case, preset)
    inputs = common.make_inputs(case, preset)
    call_a = inputs[0]
    gen = torch.Generator().manual_seed(1)
    other = torch.randn(call_a["hidden_states"].shape, generator=gen).to(call_a["hidden_states"])
    call_b = dict(call_a, hidden_states=other)  # a different latent: block 0's residual changes a lot
    names = VARIANTS + REFERENCES
    variants = {name: common.make_variant(name, case, base, case.threshold) for name in names}

    # Compile everything, and walk every path the timed part takes (hook variants compile per decision pattern).
    with torch.no_grad():
        for name, variant in variants.items():
            progress(f"{case.name}: compiling {name}")
            if name in VARIANTS:
                variant.set_threshold(case.threshold)
                variant.reset()
                common.generate(variant, case, inputs)
                variant.reset()
                common.generate(variant, case, inputs)
            variant.set_threshold(0.0)
            variant.reset()
            for kwargs in (call_a, call_a, call_a, call_b, call_a, call_b, call_b, call_a, call_a):
                variant("cond", kwargs)
    warmup_counts = common.compile_counts()
    progress(None)

    samples = {name: {"computed": [], "skipped": []} for name in names}
    checks = {name: {"computed_ok": 0, "computed_bad": 0, "skipped_ok": 0, "skipped_bad": 0} for name in names}

    def time_calls(variant, kind: str) -> None:
        name = variant.name
        if not variant.caches:
            for _ in range(preset.calls):
                if name in FRAMES:  # in a skipped call's place: after block 0's work has been through the caches
                    variants["floor"]("cond", call_a)
                samples[name]["computed"].append(common.timed(lambda: variant("cond", call_a), device))
            return
        variant.set_threshold(0.0)
        if kind == "computed":  # each call's latent differs from the last computed one: diff >> 0
            variant("cond", call_a)
            for i in range(preset.calls):
                kwargs = call_b if i % 2 == 0 else call_a
                samples[name]["computed"].append(common.timed(lambda: variant("cond", kwargs), device))
                checks[name]["computed_ok" if variant.last_decision("cond") else "computed_bad"] += 1
        else:  # the same inputs as the last computed call: diff == 0 <= threshold
            variant("cond", call_a)
            for _ in range(preset.calls):
                samples[name]["skipped"].append(common.timed(lambda: variant("cond", call_a), device))
                checks[name]["skipped_bad" if variant.last_decision("cond") else "skipped_ok"] += 1

    with torch.no_grad(), common.no_compiles():
        for order in _rotations(names, preset.rounds):
            for name in order:
                for kind in ("computed", "skipped"):
                    time_calls(variants[name], kind)
            progress(f"{case.name}: step latency")

        loops = {name: {"seconds": [], "peak_mib": [], "cache_mib": [], "decisions": None} for name in VARIANTS}
        loop_decisions = {}
        for order in _rotations(VARIANTS, preset.loop_repeats):
            for name in order:
                variant = variants[name]
                variant.set_threshold(case.threshold)
                variant.reset()
                with common.PeakMemory(device) as memory:
                    seconds = common.timed(lambda: loop_decisions.__setitem__(
                        name, common.generate(variant, case, inputs)), device)
                loops[name]["seconds"].append(seconds)
                loops[name]["peak_mib"].append(memory.mib)
                loops[name]["cache_mib"].append(variant.cache_state_bytes() / 2**20)
                if loops[name]["decisions"] is None:
                    loops[name]["decisions"] = loop_decisions[name]
                elif loops[name]["decisions"] != loop_decisions[name]:
                    raise AssertionError(f"{case.name}/{name}: decisions changed between identical generations")
            progress(f"{case.name}: denoising loops")
        for variant in variants.values():
            variant.reset()

    bad = {name: c for name, c in checks.items() if c["computed_bad"] or c["skipped_bad"]}
    if bad:
        raise AssertionError(f"{case.name}: timed calls did not compute/skip as intended: {bad}")
    same = _compare_decisions({name: loops[name]["decisions"] for name in VARIANTS})
    if not all(same.values()):  # reported (and run.py exits non-zero), not raised: the other numbers still count
        detail = {name: _format_decisions(loops[name]["decisions"]) for name in VARIANTS if name != "plain"}
        log(f"WARNING {case.name}: variants decided differently at threshold {case.threshold}: {detail}")

    result = {"threshold": case.threshold, "steps": case.steps, "branches": case.branches, "batch": case.batch,
              "variants": {}, "warmup_counts": warmup_counts}
    for name in names:
        row = {
            "computed_ms": _ms(median(samples[name]["computed"])),
            "skipped_ms": _ms(median(samples[name]["skipped"])),
            "computed_samples_ms": [_ms(x) for x in samples[name]["computed"]],
            "skipped_samples_ms": [_ms(x) for x in samples[name]["skipped"]],
            "checks": checks[name],
        }
        if name in loops:
            row.update(loop_s=median(loops[name]["seconds"]), loop_samples_s=loops[name]["seconds"],
                       peak_mib=median(loops[name]["peak_mib"]), cache_state_mib=max(loops[name]["cache_mib"]),
                       skip_rate=common.skip_rate(loops[name]["decisions"]),
                       decisions=_format_decisions(loops[name]["decisions"]))
        result["variants"][name] = row
    result["same_decisions"] = same
    result["ratios"] = _step_ratios(result["variants"])
    return result


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


def _step_ratios(rows: dict) -> dict:
    plain = rows["plain"]["computed_ms"]
    floor = rows["floor"]["computed_ms"]
    frame_extra = rows["frame"]["computed_ms"] - rows["floor_frame"]["computed_ms"]
    ratios = {"floor_over_plain": _ratio(floor, plain), "frame_extra_ms": frame_extra,
              "frame_extra_over_floor": _ratio(frame_extra, floor)}
    for name in ("hook_compile", "hook_regional", "fbc"):
        row = rows[name]
        prefix = "" if name == "fbc" else name + "_"
        ratios[prefix + "skipped_over_floor"] = _ratio(row["skipped_ms"], floor)
        ratios[prefix + "skipped_over_plain"] = _ratio(row["skipped_ms"], plain)
        ratios[prefix + "computed_over_plain"] = _ratio(row["computed_ms"], plain)
        ratios[prefix + "skipped_over_computed"] = _ratio(row["skipped_ms"], row["computed_ms"])
    fbc = rows["fbc"]
    for peer in PEERS:
        if peer != "plain":
            ratios[f"skipped_over_{peer}_skipped"] = _ratio(fbc["skipped_ms"], rows[peer]["skipped_ms"])
            ratios[f"{peer}_skipped_over_skipped"] = _ratio(rows[peer]["skipped_ms"], fbc["skipped_ms"])
            ratios[f"computed_speedup_over_{peer}"] = _ratio(rows[peer]["computed_ms"], fbc["computed_ms"])
        ratios[f"loop_speedup_over_{peer}"] = _ratio(rows[peer]["loop_s"], fbc["loop_s"])
    return ratios


# ----------------------------------------------------------------------------------------------------- compile


def compile_suite(preset: Preset, progress: Callable, threads: int) -> dict:
    models = {}
    for case in preset.cases:
        runs = {name: {"cold": [], "warm": []} for name in VARIANTS}
        for order in _rotations(VARIANTS, case.compile_repeats or preset.compile_repeats):
            for name in order:
                cache_dir = tempfile.mkdtemp(prefix=f"fbc-bench-inductor-{name}-")
                try:
                    for kind in ("cold", "warm"):
                        progress(f"{case.name}: {kind} compile, {name}")
                        runs[name][kind].append(_run_worker(preset, case, name, cache_dir, threads))
                        progress(None)
                finally:
                    shutil.rmtree(cache_dir, ignore_errors=True)
        models[case.name] = _compile_summary(case, runs)
    return {"models": models}


def _run_worker(preset: Preset, case: Case, variant: str, cache_dir: str, threads: int) -> dict:
    request = dict(preset=preset.name, model=case.name, variant=variant, threads=threads, steps=case.steps,
                   dict_tag_guards=torch._dynamo.config.use_recursive_dict_tags_for_guards)
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir, TRITON_CACHE_DIR=os.path.join(cache_dir, "triton"))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "compile_worker.py"), json.dumps(request)],
                          capture_output=True, text=True, env=env, cwd=os.path.dirname(HERE))
    for line in proc.stdout.splitlines():
        if line.startswith("COMPILE_WORKER_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"compile worker failed for {case.name}/{variant} (exit {proc.returncode}):\n"
                       f"{proc.stderr[-4000:]}")


def _compile_summary(case: Case, runs: dict) -> dict:
    variants = {}
    for name, kinds in runs.items():
        cold, warm = kinds["cold"], kinds["warm"]
        counts = cold[0]["counts"]
        variants[name] = dict(
            cold_compile_s=median(r["compile_s"] for r in cold),
            warm_compile_s=median(r["compile_s"] for r in warm),
            cold_first_generation_s=median(r["first_generation_s"] for r in cold),
            warm_first_generation_s=median(r["first_generation_s"] for r in warm),
            steady_generation_s=median(r["second_generation_s"] for r in cold + warm),
            dynamo_graphs=counts["dynamo_graphs"], pieces=counts["pieces"], frames=counts["frames"],
            recompiles=counts["recompiles"], graph_breaks=counts["graph_breaks"],
            graph_breaks_in_metrics=counts["graph_breaks_in_metrics"], frames_given_up=counts["frames_given_up"],
            fbc_counter=counts["fbc"], recompile_reasons=counts["recompile_reasons"],
            graph_break_reasons=counts["graph_break_reasons"],
            frames_compiled_in_second_generation=max(r["frames_compiled_in_second_generation"] for r in cold + warm),
            skip_rate=cold[0]["skip_rate"], decisions=_format_decisions(cold[0]["decisions_second"]),
            first_generation_decisions=_format_decisions(cold[0]["decisions"]),
            counts_identical_across_runs=all(r["counts"]["dynamo_graphs"] == counts["dynamo_graphs"]
                                             and r["counts"]["recompiles"] == counts["recompiles"] for r in cold),
            runs=kinds,
        )
    fbc, plain, hook = variants["fbc"], variants["plain"], variants["hook_compile"]
    ratios = {
        "cold_compile_over_plain": _ratio(fbc["cold_compile_s"], plain["cold_compile_s"]),
        "warm_compile_over_plain": _ratio(fbc["warm_compile_s"], plain["warm_compile_s"]),
        "cold_first_generation_over_hook_compile": _ratio(fbc["cold_first_generation_s"],
                                                          hook["cold_first_generation_s"]),
        "cold_first_generation_over_hook_regional": _ratio(fbc["cold_first_generation_s"],
                                                           variants["hook_regional"]["cold_first_generation_s"]),
        "cold_first_generation_over_plain": _ratio(fbc["cold_first_generation_s"], plain["cold_first_generation_s"]),
    }
    first = {name: runs[name]["cold"][0]["decisions"] for name in VARIANTS}
    second = {name: runs[name]["cold"][0]["decisions_second"] for name in VARIANTS}
    return dict(threshold=case.threshold, steps=case.steps, branches=case.branches, variants=variants,
                ratios=ratios, same_decisions_first_generation=_compare_decisions(first),
                same_decisions=_compare_decisions(second))


# -------------------------------------------------------------------------------------------------- thresholds


THRESHOLD_VARIANTS = ("plain", "hook_compile", "fbc")


def thresholds_suite(preset: Preset, progress: Callable, repeats: int = 1) -> dict:
    _set_limits()
    models = {}
    for case in preset.cases:
        base = variants = None
        _release()
        common.clear_counts()
        base = common.build_model(case, preset)
        inputs = common.make_inputs(case, preset)
        variants = {name: common.make_variant(name, case, base, 0.0) for name in THRESHOLD_VARIANTS}
        points = [(name, thr) for name in THRESHOLD_VARIANTS
                  for thr in (case.thresholds if name != "plain" else (None,))]
        with torch.no_grad():
            for name, thr in points:  # compile every decision pattern before timing
                progress(f"{case.name}: warm-up {name} {thr}")
                _threshold_run(variants[name], case, inputs, thr, preset.device)
                progress(None)
            seconds = {point: [] for point in points}
            decisions = {}
            with common.no_compiles():
                for order in _rotations(points, repeats):
                    for point in order:
                        s, d = _threshold_run(variants[point[0]], case, inputs, point[1], preset.device)
                        seconds[point].append(s)
                        decisions[point] = d
                        progress(f"{case.name}: {point[0]} @ {point[1]}")
        rows = []
        plain_s = median(seconds[("plain", None)])
        for name, thr in points:
            if name == "plain":
                continue
            s = median(seconds[(name, thr)])
            rows.append(dict(variant=name, threshold=thr, generation_s=s, samples_s=seconds[(name, thr)],
                             skip_rate=common.skip_rate(decisions[(name, thr)]), speedup_over_plain=_ratio(plain_s, s),
                             decisions=_format_decisions(decisions[(name, thr)])))
        same = {thr: decisions[("hook_compile", thr)] == decisions[("fbc", thr)] for thr in case.thresholds}
        models[case.name] = dict(steps=case.steps, branches=case.branches, plain_generation_s=plain_s, rows=rows,
                                 same_decisions=same)
    return {"models": models}


def _threshold_run(variant, case, inputs, threshold, device):
    if threshold is not None:
        variant.set_threshold(threshold)
    variant.reset()
    out = {}
    seconds = common.timed(lambda: out.setdefault("d", common.generate(variant, case, inputs)), device)
    return seconds, out["d"]


# ------------------------------------------------------------------------------------------------------ kernel


def kernel_suite(preset: Preset, progress: Callable) -> dict:
    if not torch.cuda.is_available():
        log("kernel suite: skipped (needs a CUDA GPU; the Triton kernel only runs under the interpreter here)")
        return {"skipped": "needs a CUDA GPU", "rows": []}
    from kernel import run_kernel_bench

    progress("kernel")
    rows = run_kernel_bench()
    progress(None)
    return {"rows": rows}
