"""The four suites. Each returns a JSON-able dict: ``{"models": {name: {...}}, ...}``; ``report`` renders them.

Everything that is compared is measured in one run and, where it can be, in one process with the variants
interleaved (round-robin, rotating the order each round), so that drift on a shared machine falls on all of them
alike; the numbers reported are medians and ratios of medians. Cold compile times are the exception: they need a
fresh process and an empty inductor cache per measurement.
"""

from __future__ import annotations

import dataclasses
import gc
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
from fbc_compile.testing import count_compiles

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTED = ("graphs", "pieces", "frames", "recompiles", "graph_breaks", "frames_given_up")


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


def _release() -> None:
    """Drop the previous model's compiled code and free its memory before building the next (GPU presets hold
    one full-size model at a time)."""
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _compare_decisions(all_decisions: dict[str, dict]) -> dict:
    """Whether every caching variant decided exactly as fbc did, call for call."""
    reference = all_decisions.get("fbc")
    return {name: decisions == reference for name, decisions in all_decisions.items()
            if name not in ("fbc", "plain") and reference is not None}


def _format_decisions(decisions: dict[str, list]) -> dict[str, str]:
    return {k: "".join("?" if d is None else ("C" if d else "s") for d in v) for k, v in decisions.items()}


def _same_every_time(runs: list[dict], where: str) -> dict:
    """The decisions of identical generations, which must not change from one to the next."""
    if any(run != runs[0] for run in runs):
        raise AssertionError(f"{where}: decisions changed between identical generations: "
                             f"{[_format_decisions(run) for run in runs]}")
    return runs[0]


# ------------------------------------------------------------------------------------------------------- steps


def steps_suite(preset: Preset, progress: Callable) -> dict:
    _set_limits()
    models = {}
    for case in preset.cases:
        _release()
        models[case.name] = _steps_model(case, preset, progress)
    return {"models": models}


def _time_steps(variant: common.Variant, kind: str, calls: int, call_a: dict, call_b: dict,
                floor: common.Variant) -> tuple[list[float], list]:
    """Samples of seconds per call of one step kind, and the decisions of the calls timed (warm-up included).

    Caching variants run at threshold 0 in one context, after a call with ``call_a``: "computed" alternates
    the two latents, so each call differs from the last computed one; "skipped" repeats ``call_a``, whose
    difference from the last computed call is exactly 0. The frame rows time each call right after a floor call,
    which leaves the CPU caches as a skipped call finds them after block 0's work; the rest run back to back.
    """
    if variant.name in FRAMES:
        return [common.measure(lambda: variant("cond", call_a), setup=lambda: floor("cond", call_a))
                for _ in range(calls)], []
    if not variant.caches:
        return [common.measure(lambda: variant("cond", call_a), number=calls)], []
    decisions, last = [], [call_a]

    def prime():
        variant("cond", call_a)
        last[0] = call_a

    def step():
        if kind == "computed":
            last[0] = call_b if last[0] is call_a else call_a
        variant("cond", last[0])
        decisions.append(variant.last_decision("cond"))

    return [common.measure(step, setup=prime, number=calls)], decisions


def _steps_model(case: Case, preset: Preset, progress: Callable) -> dict:
    base = common.build_model(case, preset)
    call_a, call_b = common.step_inputs(case, preset)
    names = VARIANTS + REFERENCES
    variants = {name: common.make_variant(name, case, base, case.threshold) for name in names}
    generations = {name: common.generation(variants[name], case, preset) for name in VARIANTS}

    # Compile everything, and walk every path the timed part takes (hook variants compile per decision pattern).
    with torch.no_grad(), count_compiles() as warmup:
        for name, variant in variants.items():
            progress(f"{case.name}: compiling {name}")
            if name in VARIANTS:
                variant.set_threshold(case.threshold)
                generations[name]()
                generations[name]()
            variant.set_threshold(0.0)
            variant.reset()
            for kwargs in (call_a, call_a, call_a, call_b, call_a, call_b, call_b, call_a, call_a):
                variant("cond", kwargs)

    samples = {name: {"computed": [], "skipped": []} for name in names}
    checks = {name: {"computed_ok": 0, "computed_bad": 0, "skipped_ok": 0, "skipped_bad": 0} for name in names}
    loops = {name: {"seconds": [], "peak_mib": [], "cache_mib": [], "runs": []} for name in VARIANTS}
    with torch.no_grad(), common.no_compiles():
        for order in _rotations(names, preset.rounds):
            for name in order:
                variant = variants[name]
                variant.set_threshold(0.0)
                for kind in ("computed", "skipped") if variant.caches else ("computed",):
                    seconds, decisions = _time_steps(variant, kind, preset.calls, call_a, call_b, variants["floor"])
                    samples[name][kind] += seconds
                    for computed in decisions:
                        checks[name][f"{kind}_{'ok' if computed == (kind == 'computed') else 'bad'}"] += 1
            progress(f"{case.name}: step latency")

        for order in _rotations(VARIANTS, preset.loop_repeats):
            for name in order:
                variants[name].set_threshold(case.threshold)
                loop = loops[name]
                with common.cuda_peak(preset.device) as peak:
                    # One generation per sample: they were warmed up above, and Timer's own warm-up would run two
                    # more generations per sample.
                    loop["seconds"].append(common.wall(lambda: loop["runs"].append(generations[name]())))
                loop["peak_mib"].append(peak.get("mib"))
                loop["cache_mib"].append(variants[name].cache_state_bytes() / 2**20)
            progress(f"{case.name}: denoising loops")
        for variant in variants.values():
            variant.reset()

    bad = {name: c for name, c in checks.items() if c["computed_bad"] or c["skipped_bad"]}
    if bad:
        raise AssertionError(f"{case.name}: timed calls did not compute/skip as intended: {bad}")
    loop_decisions = {name: _same_every_time(loops[name]["runs"], f"{case.name}/{name}") for name in VARIANTS}
    same = _compare_decisions(loop_decisions)
    if not all(same.values()):  # reported (and run.py exits non-zero), not raised: the other numbers still count
        detail = {name: _format_decisions(d) for name, d in loop_decisions.items() if name != "plain"}
        log(f"WARNING {case.name}: variants decided differently at threshold {case.threshold}: {detail}")

    result = {"threshold": case.threshold, "steps": case.steps, "branches": case.branches, "batch": case.batch,
              "variants": {}, "warmup_counts": dataclasses.asdict(warmup)}
    for name in names:
        row = {
            "computed_ms": _ms(median(samples[name]["computed"])),
            "skipped_ms": _ms(median(samples[name]["skipped"])),
            "computed_samples_ms": [_ms(x) for x in samples[name]["computed"]],
            "skipped_samples_ms": [_ms(x) for x in samples[name]["skipped"]],
            "checks": checks[name],
        }
        if name in loops:
            loop = loops[name]
            row.update(loop_s=median(loop["seconds"]), loop_samples_s=loop["seconds"],
                       cache_state_mib=max(loop["cache_mib"]), skip_rate=common.skip_rate(loop_decisions[name]),
                       decisions=_format_decisions(loop_decisions[name]))
            if preset.device == "cuda":
                row["peak_mib"] = median(loop["peak_mib"])
        result["variants"][name] = row
    result["same_decisions"] = same
    result["ratios"] = step_ratios(result["variants"])
    return result


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


def step_ratios(rows: dict) -> dict:
    """The steps suite's ratios of medians. ``frame_extra_ms`` is dynamo's frame for the whole model less the
    floor's: what a skipped step of any single-graph compile pays over the floor, so a skipped step is held to
    ``floor + frame_extra`` (``skipped_over_floor_and_frame``); None where a run did not time the frames."""
    plain = rows["plain"]["computed_ms"]
    floor = rows["floor"]["computed_ms"]
    frame_extra = (rows["frame"]["computed_ms"] - rows["floor_frame"]["computed_ms"]
                   if "frame" in rows and "floor_frame" in rows else None)
    floor_and_frame = None if frame_extra is None else floor + frame_extra
    ratios = {"floor_over_plain": _ratio(floor, plain), "frame_extra_ms": frame_extra,
              "frame_extra_over_floor": _ratio(frame_extra, floor)}
    for name in ("hook_compile", "hook_regional", "fbc"):
        row = rows[name]
        prefix = "" if name == "fbc" else name + "_"
        ratios[prefix + "skipped_over_floor"] = _ratio(row["skipped_ms"], floor)
        ratios[prefix + "skipped_over_floor_and_frame"] = _ratio(row["skipped_ms"], floor_and_frame)
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
            **{key: counts[key] for key in COUNTED}, fbc=counts["fbc"],
            recompile_reasons=counts["recompile_reasons"], graph_break_reasons=counts["graph_break_reasons"],
            frames_compiled_in_second_generation=max(r["second_counts"]["frames"] for r in cold + warm),
            skip_rate=cold[0]["skip_rate"], decisions=_format_decisions(cold[0]["decisions_second"]),
            first_generation_decisions=_format_decisions(cold[0]["decisions"]),
            counts_identical_across_runs=all({k: r["counts"][k] for k in COUNTED} == {k: counts[k] for k in COUNTED}
                                             for r in cold),
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
        _release()
        models[case.name] = _thresholds_model(case, preset, progress, repeats)
    return {"models": models}


def _thresholds_model(case: Case, preset: Preset, progress: Callable, repeats: int) -> dict:
    base = common.build_model(case, preset)
    variants = {name: common.make_variant(name, case, base, 0.0) for name in THRESHOLD_VARIANTS}
    generations = {name: common.generation(variant, case, preset) for name, variant in variants.items()}
    points = [(name, thr) for name in THRESHOLD_VARIANTS for thr in (case.thresholds if name != "plain" else (None,))]

    def at(point):
        """The generation of ``point`` = (variant, threshold), its threshold set."""
        name, threshold = point
        if threshold is not None:
            variants[name].set_threshold(threshold)
        return generations[name]

    for point in points:  # compile every decision pattern before timing
        progress(f"{case.name}: warm-up {point[0]} {point[1]}")
        at(point)()
    seconds = {point: [] for point in points}
    runs = {point: [] for point in points}
    with common.no_compiles():
        for order in _rotations(points, repeats):
            for point in order:
                generate = at(point)
                seconds[point].append(common.measure(lambda: runs[point].append(generate())))
                progress(f"{case.name}: {point[0]} @ {point[1]}")
    decisions = {point: _same_every_time(runs[point], f"{case.name}/{point}") for point in points}
    plain_s = median(seconds[("plain", None)])
    rows = []
    for name, thr in points:
        if name == "plain":
            continue
        s = median(seconds[(name, thr)])
        rows.append(dict(variant=name, threshold=thr, generation_s=s, samples_s=seconds[(name, thr)],
                         skip_rate=common.skip_rate(decisions[(name, thr)]), speedup_over_plain=_ratio(plain_s, s),
                         decisions=_format_decisions(decisions[(name, thr)])))
    same = {thr: decisions[("hook_compile", thr)] == decisions[("fbc", thr)] for thr in case.thresholds}
    return dict(steps=case.steps, branches=case.branches, plain_generation_s=plain_s, rows=rows, same_decisions=same)


# ------------------------------------------------------------------------------------------------------ kernel


def kernel_suite(preset: Preset, progress: Callable) -> dict:
    if not torch.cuda.is_available():
        log("kernel suite: skipped (needs a CUDA GPU; the Triton kernel only runs under the interpreter here)")
        return {"skipped": "needs a CUDA GPU", "rows": []}
    from kernel import run_kernel_bench

    progress("kernel")
    return {"rows": run_kernel_bench()}
