"""Benchmark entry point: plain torch.compile, diffusers' FBC hook (+ torch.compile, + regional compilation) and
fbc_backend, side by side in one run.

    python bench/run.py steps --preset cpu            # step latency (computed / skipped / floor), loops, memory
    python bench/run.py compile --preset cpu          # cold + warm compile time, graphs, pieces, recompiles, breaks
    python bench/run.py thresholds --preset cpu       # generation time and skip rate against threshold, plotted
    python bench/run.py kernel --preset gpu           # the residual-difference kernel against eager (GPU only)
    python bench/run.py all --preset tiny             # every suite (the smoke test)
    python bench/run.py report [--check]              # docs/benchmarks.md from bench/results/*.json

Prints Markdown tables on stdout; writes ``<out>/<suite>-<preset>[-<tag>].json`` (every number, with the
environment) and ``.png``. Progress goes to stderr. Runs that write into ``bench/results`` rewrite
``docs/benchmarks.md`` from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SUITES = ("steps", "compile", "thresholds", "kernel")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Presets: tiny (the tests' tiny configs, a smoke test), cpu (hidden 128, ~12 blocks, 1024 tokens), "
               "gpu (the real Flux.1-dev, Wan 2.1 1.3B, HunyuanVideo, LTX-Video, CogView4-6B architectures at the "
               "seed settings, bf16, random weights; needs CUDA).")
    parser.add_argument("suite", choices=SUITES + ("all", "report"), help="what to measure, or report")
    parser.add_argument("--preset", choices=("tiny", "cpu", "gpu"), default="tiny", help="model sizes (default tiny)")
    parser.add_argument("--models", help="comma-separated subset: flux,wan,hunyuan_video,ltx_video,cogview4")
    parser.add_argument("--steps", type=int, help="denoising steps per generation (default: the preset's)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default 1 on CPU: a shared machine makes multi-threaded timings "
                             "erratic; the GPU preset leaves torch's default)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of step timing (default: the preset's)")
    parser.add_argument("--repeats", type=int, help="timed generations / compile runs per variant (default: the "
                                                     "preset's)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="directory for JSON and PNG files")
    parser.add_argument("--tag", help="suffix for the output files: <suite>-<preset>-<tag>.json")
    parser.add_argument("--dict-tag-guards", action="store_true",
                        help="evaluate dynamo's guards with torch._dynamo.config.use_recursive_dict_tags_for_guards "
                             "(off by default in torch), for every variant: an nn.Module subtree whose dicts are "
                             "unchanged since the last call is not re-checked")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--check", action="store_true", help="report: only check that docs/benchmarks.md is what "
                                                             "the results give (exit 1 if not)")
    return parser.parse_args(argv)


class Progress:
    """A tqdm bar over a suite's units of work; ``progress(text)`` counts one done and names the next."""

    def __init__(self, desc: str, total: int, disable: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, disable=disable, file=sys.stderr, dynamic_ncols=True, leave=True)

    def __call__(self, text: str) -> None:
        self.bar.set_postfix_str(text[:60], refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _units(suite: str, preset, repeats: int) -> int:
    """How many times ``suite`` calls its progress for ``preset``."""
    if suite == "steps":
        return len(preset.cases) * (7 + preset.rounds + preset.loop_repeats)
    if suite == "compile":
        return sum(4 * 2 * (case.compile_repeats or preset.compile_repeats) for case in preset.cases)
    if suite == "thresholds":  # a warm-up and `repeats` timed generations per point
        return sum((1 + repeats) * (1 + 2 * len(case.thresholds)) for case in preset.cases)
    return 1


def run_suite(suite: str, preset, args, threads: int) -> dict:
    import suites

    repeats = args.repeats or 1  # the thresholds suite's timed generations per point
    progress = Progress(suite, _units(suite, preset, repeats), args.no_progress)
    try:
        if suite == "steps":
            return suites.steps_suite(preset, progress)
        if suite == "compile":
            return suites.compile_suite(preset, progress, threads)
        if suite == "thresholds":
            return suites.thresholds_suite(preset, progress, repeats)
        return suites.kernel_suite(preset, progress)
    finally:
        progress.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.suite == "report":
        import report

        if report.write_docs(check=args.check) or not args.check:
            return 0
        print(f"{report.DOCS} is not what `bench/run.py report` writes from the results: run it", file=sys.stderr)
        return 1

    import torch

    if args.preset == "gpu" and not torch.cuda.is_available():
        print("the gpu preset needs a CUDA GPU", file=sys.stderr)
        return 2
    threads = args.threads or (1 if args.preset != "gpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    torch._dynamo.config.use_recursive_dict_tags_for_guards = args.dict_tag_guards

    import common
    import report

    preset = common.get_preset(args.preset, args.models.split(",") if args.models else None, args.steps)
    if args.rounds:
        preset.rounds = args.rounds
    if args.repeats:
        preset.loop_repeats = preset.compile_repeats = args.repeats
        for case in preset.cases:
            case.compile_repeats = None
    env = common.environment(preset)
    results = {}
    print(f"# fbc_compile benchmark: preset {preset.name}\n\n{preset.description}\n\n"
          f"{report.environment_line(env)}\n")
    for suite in SUITES if args.suite == "all" else (args.suite,):
        start = time.perf_counter()
        data = run_suite(suite, preset, args, threads)
        data.update(suite=suite, preset=preset.name, description=preset.description, environment=env,
                    wall_s=time.perf_counter() - start)
        targets = common.evaluate_targets(preset.targets, {suite: data})
        if targets:
            data["targets"] = targets
        results[suite] = data
        stem = f"{suite}-{preset.name}" + (f"-{args.tag}" if args.tag else "")
        common.write_json(args.out / f"{stem}.json", data)
        print(f"## {suite}\n\n{report.MARKDOWN[suite](data)}\n")
        if targets:
            print(report.targets_markdown(targets) + "\n")
        if suite in report.PLOTS and not args.no_plot:
            report.PLOTS[suite](data, str(args.out / f"{stem}.png"),
                                f"{suite}, preset {preset.name}: {report.environment_line(env)}")
        sys.stdout.flush()
    if args.out.resolve() == common.RESULTS.resolve():
        report.write_docs()
    mismatched = [(suite, model) for suite, data in results.items() for model, r in data.get("models", {}).items()
                  if not all(r.get("same_decisions", {}).values())]
    if mismatched:
        print(f"ERROR: the caching variants did not make the same decisions in {mismatched}: their loop times are "
              f"not comparable there", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
