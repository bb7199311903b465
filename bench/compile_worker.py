"""One compile measurement in a fresh process: ``python bench/compile_worker.py '<json request>'``.

The parent (the ``compile`` suite) sets ``TORCHINDUCTOR_CACHE_DIR`` (and ``TRITON_CACHE_DIR``) to a directory of
its choosing before starting this process: a new empty one for a cold compile, the one a cold run just filled for
a warm compile. The process builds one variant of one model, runs two full generations and prints one JSON line:
the first generation's wall time (compilation included), the dynamo compile time, the counts of what was compiled
during it, and the second generation's wall time and counts (nothing should compile during it).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(request: dict) -> dict:
    import torch

    torch.set_num_threads(request["threads"])
    torch._dynamo.config.use_recursive_dict_tags_for_guards = request["dict_tag_guards"]
    import common

    preset = common.get_preset(request["preset"], [request["model"]], request.get("steps"))
    case = preset.cases[0]
    common.clear_counts()
    base = common.build_model(case, preset)
    inputs = common.make_inputs(case, preset)
    variant = common.make_variant(request["variant"], case, base, case.threshold, isolated=False)

    decisions = {}
    first_s = common.timed(lambda: decisions.setdefault("first", common.generate(variant, case, inputs)),
                           preset.device)
    first = common.compile_counts()
    variant.reset()
    second_s = common.timed(lambda: decisions.setdefault("second", common.generate(variant, case, inputs)),
                            preset.device)
    second = common.compile_counts()
    return dict(
        variant=request["variant"], model=case.name, cache_dir=os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        first_generation_s=first_s, second_generation_s=second_s, compile_s=first["compile_s"],
        counts=first, frames_compiled_in_second_generation=second["frames"] - first["frames"],
        decisions=decisions["first"], decisions_second=decisions["second"],
        skip_rate=common.skip_rate(decisions["second"]), threads=torch.get_num_threads(),
    )


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print("COMPILE_WORKER_RESULT " + json.dumps(result), flush=True)
