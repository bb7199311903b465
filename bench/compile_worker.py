"""One compile measurement in a fresh process: ``python bench/compile_worker.py '<json request>'``.

The parent (the ``compile`` suite) sets ``TORCHINDUCTOR_CACHE_DIR`` (and ``TRITON_CACHE_DIR``) to a directory of
its choosing before starting this process: a new empty one for a cold compile, the one a cold run just filled for
a warm compile. The process builds one variant of one model, runs two full generations and prints one JSON line:
the first generation's wall time (compilation included), dynamo's compile time (the sum of
``entire_frame_compile_time_s`` over the frames it compiled, backend and inductor included), the counts of what
was compiled during it (``fbc_compile.testing.count_compiles``), and the second generation's wall time and counts
(nothing should compile during it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(request: dict) -> dict:
    import torch

    torch.set_num_threads(request["threads"])
    torch._dynamo.config.use_recursive_dict_tags_for_guards = request["dict_tag_guards"]
    import common
    from fbc_compile.testing import count_compiles
    from torch._dynamo.utils import get_compilation_metrics

    preset = common.get_preset(request["preset"], [request["model"]], request.get("steps"))
    case = preset.cases[0]
    variant = common.make_variant(request["variant"], case, common.build_model(case, preset), case.threshold,
                                  isolated=False)
    generate = common.generation(variant, case, preset)
    decisions = {}
    with count_compiles() as first:
        first_s = common.wall(lambda: decisions.setdefault("first", generate()))
    compile_s = sum(m.entire_frame_compile_time_s or 0.0 for m in get_compilation_metrics())  # a fresh process
    with count_compiles() as second:
        second_s = common.wall(lambda: decisions.setdefault("second", generate()))
    return dict(
        variant=request["variant"], model=case.name, cache_dir=os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        first_generation_s=first_s, second_generation_s=second_s, compile_s=compile_s,
        counts=dataclasses.asdict(first), second_counts=dataclasses.asdict(second),
        decisions=decisions["first"], decisions_second=decisions["second"],
        skip_rate=common.skip_rate(decisions["second"]), threads=torch.get_num_threads(),
    )


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print("COMPILE_WORKER_RESULT " + json.dumps(result), flush=True)
