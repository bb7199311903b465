"""Markdown tables (stdout, docs) and PNG plots of the suites' results."""

from __future__ import annotations

from common import LABELS, REFERENCES, VARIANTS


def _f(value, digits=3, suffix=""):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value}{suffix}"
    if abs(value) >= 100:
        return f"{value:.0f}{suffix}"
    if abs(value) >= 10:
        return f"{value:.1f}{suffix}"
    return f"{value:.{digits}g}{suffix}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_line(env: dict) -> str:
    hw = env.get("gpu") or f"{env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('torch_threads')} torch threads)"
    return (f"{hw}; torch {env.get('torch')}, diffusers {env.get('diffusers')}, triton {env.get('triton', 'n/a')}, "
            f"Python {env.get('python')}, {env.get('dtype')}, {env.get('dynamo_guards', 'default')} guards; commit {env.get('git_commit')}, {env.get('date')}")


def steps_markdown(result: dict) -> str:
    out = []
    for model, r in result["models"].items():
        v, ratios = r["variants"], r["ratios"]
        plain, floor = v["plain"]["computed_ms"], v["floor"]["computed_ms"]
        rows = []
        for name in VARIANTS + REFERENCES:
            row = v[name]
            skipped = row["skipped_ms"]
            rows.append([LABELS[name], _f(row["computed_ms"]), _f(skipped),
                         _f(row["computed_ms"] / plain if row["computed_ms"] else None),
                         _f(skipped / plain if skipped else None), _f(skipped / floor if skipped else None),
                         _f(row.get("loop_s")), _f(row.get("skip_rate")), _f(row.get("peak_mib")),
                         _f(row.get("cache_state_mib"))])
        out.append(f"**{model}** (threshold {r['threshold']} for the loop; {r['steps']} steps x {r['branches']} "
                   f"call(s), batch {r['batch']}; same decisions as fbc: "
                   f"{', '.join(f'{k} {_f(x)}' for k, x in r['same_decisions'].items())})\n")
        out.append(_table(["variant", "computed step ms", "skipped step ms", "computed / plain", "skipped / plain",
                           "skipped / floor", "loop s", "loop skip rate", "loop peak MiB", "cache state MiB"],
                          rows))
        speedups = ", ".join(f"{LABELS[p]} {_f(ratios.get(f'loop_speedup_over_{p}'))}x" for p in
                             ("plain", "hook_compile", "hook_regional"))
        skipped = ", ".join(f"{LABELS[p]} {_f(ratios.get(f'{p}_skipped_over_skipped'))}x" for p in
                            ("hook_compile", "hook_regional"))
        out.append(f"\nfbc loop speedup over: {speedups}. fbc skipped step faster than: {skipped}. Dynamo's frame "
                   f"costs {_f(ratios['frame_extra_ms'])} ms more per call for the whole model than for the floor "
                   f"({_f(ratios['frame_extra_over_floor'])} of the floor's step), which a skipped step of any "
                   f"single-graph compile of the model pays.\n")
    return "\n".join(out)


def compile_markdown(result: dict) -> str:
    out = []
    for model, r in result["models"].items():
        rows = []
        for name in VARIANTS:
            x = r["variants"][name]
            rows.append([LABELS[name], _f(x["cold_compile_s"]), _f(x["warm_compile_s"]),
                         _f(x["cold_first_generation_s"]), _f(x["warm_first_generation_s"]),
                         _f(x["steady_generation_s"]), x["dynamo_graphs"], x["pieces"], x["recompiles"],
                         x["graph_breaks"], _f(x["skip_rate"])])
        ratios = r["ratios"]
        out.append(f"**{model}** ({r['steps']} steps x {r['branches']} call(s), threshold {r['threshold']}; "
                   f"same decisions as fbc: {', '.join(f'{k} {_f(x)}' for k, x in r['same_decisions'].items())})\n")
        out.append(_table(["variant", "cold compile s", "warm compile s", "cold 1st generation s",
                           "warm 1st generation s", "steady generation s", "dynamo graphs", "pieces", "recompiles",
                           "graph breaks", "skip rate"], rows))
        out.append(f"\nfbc / plain cold compile: {_f(ratios['cold_compile_over_plain'])}x; fbc / hook+compile "
                   f"cold first generation: {_f(ratios['cold_first_generation_over_hook_compile'])}x\n")
    return "\n".join(out)


def thresholds_markdown(result: dict) -> str:
    out = []
    models = result["models"]
    thresholds = sorted({row["threshold"] for r in models.values() for row in r["rows"]})
    header = ["threshold"] + [f"{m} ({v})" for m in models for v in ("fbc", "hook")]
    rows = []
    for thr in thresholds:
        row = [thr]
        for r in models.values():
            for variant in ("fbc", "hook_compile"):
                hit = [x for x in r["rows"] if x["variant"] == variant and x["threshold"] == thr]
                row.append(f"{_f(hit[0]['generation_s'])} s, {hit[0]['skip_rate']:.0%}" if hit else "n/a")
        rows.append(row)
    rows.append(["plain torch.compile"] + [x for r in models.values() for x in (f"{_f(r['plain_generation_s'])} s", "")])
    out.append("Seconds per generation and skip rate (random weights: the skip rates are not a real model's)\n")
    out.append(_table(header, rows))
    return "\n".join(out)


def kernel_markdown(result: dict) -> str:
    if result.get("skipped"):
        return f"kernel suite skipped: {result['skipped']}"
    rows = [[r["size_mb"], r["dtype"], _f(r["kernel_ms"]), _f(r["eager_ms"]), _f(r["fraction_of_copy"]),
             _f(r["speedup_over_eager"])] for r in result["rows"]]
    return _table(["MiB per input", "dtype", "kernel ms", "eager ms", "fraction of copy bandwidth",
                   "speedup over eager"], rows)


def targets_markdown(targets: list[dict]) -> str:
    if not targets:
        return ""
    rows = [[t["model"], t["label"], f"{t['op']} {t['limit']}", _f(t["value"]),
             {True: "met", False: "**NOT met**", None: "not measured"}[t["met"]]] for t in targets]
    return _table(["model", "target", "limit", "measured", ""], rows)


# ------------------------------------------------------------------------------------------------------ plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _variant_ticks(ax, names) -> None:
    """The variants' names under their bars, slanted so that the long peer names do not run into each other."""
    ax.set_xticks(range(len(names)), [LABELS[n].replace(" + ", "\n+ ") for n in names], fontsize=7, rotation=20,
                  ha="right", rotation_mode="anchor")


def plot_steps(result: dict, path: str, title: str) -> None:
    plt = _pyplot()
    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        v = result["models"][model]["variants"]
        plain = v["plain"]["computed_ms"]
        names = [n for n in VARIANTS]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [v[n]["computed_ms"] / plain for n in names], 0.4, label="computed step")
        ax.bar([x + 0.2 for x in xs], [(v[n]["skipped_ms"] or 0) / plain for n in names], 0.4, label="skipped step")
        ax.axhline(v["floor"]["computed_ms"] / plain, color="k", ls="--", lw=1, label="floor")
        _variant_ticks(ax, names)
        ax.set_title(f"{model} (plain step {plain:.3g} ms)", fontsize=9)
        ax.set_ylabel("latency / plain torch.compile step")
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_compile(result: dict, path: str, title: str) -> None:
    plt = _pyplot()
    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        v = result["models"][model]["variants"]
        xs = range(len(VARIANTS))
        ax.bar([x - 0.2 for x in xs], [v[n]["cold_compile_s"] for n in VARIANTS], 0.4, label="cold")
        ax.bar([x + 0.2 for x in xs], [v[n]["warm_compile_s"] for n in VARIANTS], 0.4, label="warm")
        for x, n in zip(xs, VARIANTS):
            ax.annotate(f"{v[n]['dynamo_graphs']} graphs", (x, v[n]["cold_compile_s"]), ha="center", fontsize=6,
                        va="bottom")
        _variant_ticks(ax, VARIANTS)
        ax.set_title(model, fontsize=9)
        ax.set_ylabel("dynamo compile time over one generation, s")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_thresholds(result: dict, path: str, title: str) -> None:
    plt = _pyplot()
    models = list(result["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(3.6 * len(models), 6), squeeze=False)
    for col, model in enumerate(models):
        r = result["models"][model]
        for variant, style in (("fbc", "o-"), ("hook_compile", "s--")):
            rows = [x for x in r["rows"] if x["variant"] == variant]
            ts = [x["threshold"] for x in rows]
            axes[0][col].plot(ts, [x["generation_s"] for x in rows], style, label=LABELS[variant])
            axes[1][col].plot(ts, [x["skip_rate"] for x in rows], style, label=LABELS[variant])
        axes[0][col].axhline(r["plain_generation_s"], color="k", ls=":", lw=1, label=LABELS["plain"])
        axes[0][col].set_title(model, fontsize=9)
        axes[0][col].set_ylabel("s per generation")
        axes[0][col].set_ylim(bottom=0)
        axes[1][col].set_ylabel("skip rate")
        axes[1][col].set_ylim(0, 1)
        axes[1][col].set_xlabel("threshold")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MARKDOWN = {"steps": steps_markdown, "compile": compile_markdown, "thresholds": thresholds_markdown,
            "kernel": kernel_markdown}
PLOTS = {"steps": plot_steps, "compile": plot_compile, "thresholds": plot_thresholds}
