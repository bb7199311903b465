"""Benchmark entry point: plain torch.compile, diffusers' FBC hook (+ torch.compile, + regional compilation) and
fbc_backend, side by side in one run.

    python bench/run.py steps --preset cpu            # step latency (computed / skipped / floor), loops, memory
    python bench/run.py compile --preset cpu          # cold + warm compile time, graphs, pieces, recompiles, breaks
    python bench/run.py thresholds --preset cpu       # generation time and skip rate against threshold, plotted
    python bench/run.py kernel                        # the residual-difference kernel against eager (GPU only)
    python bench/run.py all --preset tiny             # every suite (the CI smoke test)

Prints Markdown tables on stdout; writes ``<out>/<suite>-<preset>.json`` (every number, with the environment) and
``<out>/<suite>-<preset>.png``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SUITES = ("steps", "compile", "thresholds", "kernel")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Presets: tiny (zoo's tiny configs, a CI smoke test), cpu (hidden 128, ~12 blocks, 1024 tokens), "
               "gpu (the real Flux.1-dev, Wan 2.1 1.3B, HunyuanVideo, LTX-Video, CogView4-6B architectures at the "
               "seed settings, bf16, random weights; needs CUDA).")
    parser.add_argument("suite", choices=SUITES + ("all",), help="what to measure")
    parser.add_argument("--preset", choices=("tiny", "cpu", "gpu"), default="tiny", help="model sizes (default tiny)")
    parser.add_argument("--models", help="comma-separated subset: flux,wan,hunyuan_video,ltx_video,cogview4")
    parser.add_argument("--steps", type=int, help="denoising steps per generation (default: the preset's)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default 1 on CPU: a shared machine makes multi-threaded timings "
                             "erratic; the GPU preset leaves torch's default)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of step timing (default: the preset's)")
    parser.add_argument("--repeats", type=int, help="timed generations / compile runs per variant (default: the "
                                                     "preset's)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for JSON and PNG files")
    parser.add_argument("--tag", help="suffix for the output files: <suite>-<preset>-<tag>.json")
    parser.add_argument("--dict-tag-guards", action="store_true",
                        help="evaluate dynamo's guards with torch._dynamo.config.use_recursive_dict_tags_for_guards "
                             "(off by default in torch), for every variant: an nn.Module subtree whose dicts are "
                             "unchanged since the last call is not re-checked")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


class Progress:
    """A tqdm bar over a suite's units of work; ``progress(text)`` names the current one, ``progress(None)``
    counts one done without naming it."""

    def __init__(self, desc: str, total: int | None, disable: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, dynamic_ncols=True, leave=True)

    def __call__(self, text: str | None) -> None:
        if text is None:
            return
        self.bar.set_postfix_str(text[:60], refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _units(suite: str, preset) -> int:
    n = len(preset.cases)
    if suite == "steps":
        return n * (5 + preset.rounds + preset.loop_repeats)
    if suite == "compile":
        return sum(4 * 2 * (case.compile_repeats or preset.compile_repeats) for case in preset.cases)
    if suite == "thresholds":
        return sum(2 * (1 + 2 * len(case.thresholds)) for case in preset.cases)
    return 1


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.preset == "gpu" and not torch.cuda.is_available():
        print("the gpu preset needs a CUDA GPU", file=sys.stderr)
        return 2
    threads = args.threads or (1 if args.preset != "gpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    torch._dynamo.config.use_recursive_dict_tags_for_guards = args.dict_tag_guards

    import common
    import report
    import suites

    preset = common.get_preset(args.preset, args.models.split(",") if args.models else None, args.steps)
    if args.rounds:
        preset.rounds = args.rounds
    if args.repeats:
        preset.loop_repeats = preset.compile_repeats = args.repeats
        for case in preset.cases:
            case.compile_repeats = None
    env = common.environment(preset)
    run_suites = SUITES if args.suite == "all" else (args.suite,)
    results = {}
    print(f"# fbc_compile benchmark: preset {preset.name}\n\n{preset.description}\n\n"
          f"{report.environment_line(env)}\n")
    for suite in run_suites:
        progress = Progress(suite, _units(suite, preset), args.no_progress)
        start = time.perf_counter()
        try:
            if suite == "steps":
                data = suites.steps_suite(preset, progress)
            elif suite == "compile":
                data = suites.compile_suite(preset, progress, threads)
            elif suite == "thresholds":
                data = suites.thresholds_suite(preset, progress, repeats=1 if args.repeats is None else args.repeats)
            else:
                data = suites.kernel_suite(preset, progress)
        finally:
            progress.close()
        data.update(suite=suite, preset=preset.name, description=preset.description, environment=env,
                    wall_s=time.perf_counter() - start)
        results[suite] = data
        targets = evaluate_targets(preset, {suite: data})
        if targets:
            data["targets"] = targets
        stem = f"{suite}-{preset.name}" + (f"-{args.tag}" if args.tag else "")
        common.write_json(os.path.join(args.out, stem + ".json"), data)
        print(f"## {suite}\n\n{report.MARKDOWN[suite](data)}\n")
        if targets:
            print(report.targets_markdown(targets) + "\n")
        if suite in report.PLOTS and not args.no_plot:
            path = os.path.join(args.out, stem + ".png")
            report.PLOTS[suite](data, path, f"{suite}, preset {preset.name}: {report.environment_line(env)}")
        sys.stdout.flush()
    mismatched = [(suite, model) for suite, data in results.items() for model, r in data.get("models", {}).items()
                  if not all(r.get("same_decisions", {}).values())]
    if mismatched:
        print(f"ERROR: the caching variants did not make the same decisions in {mismatched}: their loop times are "
              f"not comparable there", file=sys.stderr)
        return 1
    return 0


def evaluate_targets(preset, results: dict) -> list[dict]:
    """The preset's targets that ``results`` hold the numbers for, each with its measured value and verdict."""
    out = []
    for target in preset.targets:
        data = results.get(target.suite)
        if data is None or target.model not in data.get("models", {}):
            continue
        value = data["models"][target.model]["ratios"].get(target.key)
        out.append(dict(model=target.model, label=target.label, key=target.key, op=target.op, limit=target.limit,
                        value=value, met=target.check(value)))
    return out


if __name__ == "__main__":
    sys.exit(main())
