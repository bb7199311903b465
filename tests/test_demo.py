"""``python -m fbc_compile demo``: the default tiny-Flux run, ``--model`` on a pipeline saved to disk, bad input.

The default run is checked against diffusers' own First Block Cache on an eager copy of the same pipeline (same
decisions, step for step) and against its own plain-compile generation at threshold 0 (nothing skipped, same
image). ``--model`` really loads: a tiny pipeline is written with ``save_pretrained`` and the CLI is run on it in a
fresh process.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from fbc_compile.__main__ import build_parser, main
from fbc_compile.demo import DEMO_SIZE, TRUSTED_SPREAD, generation_kwargs, run, tiny_flux_pipeline
from pipelines import build_pipeline
from reference import record_hook_decisions

REPO = Path(__file__).resolve().parents[1]
# The demo's default threshold (0.4) sits 1e-4 from one of the 28 measured differences of the tiny Flux; this one
# is 2e-3 from every difference, so compile noise cannot flip a decision against the eager reference.
THRESHOLD = 0.4025


def _cli(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "fbc_compile", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The default demo (28 steps, the tiny Flux, inductor), two timed generations of each kind."""
    torch._dynamo.reset()
    image = tmp_path_factory.mktemp("demo") / "out.png"
    args = build_parser().parse_args(["demo", "--threshold", str(THRESHOLD), "--repeats", "2", "--output", str(image)])
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(args, out=out)
    return result, out.getvalue(), args, [str(w.message) for w in caught if "fbc_compile" in str(w.message)]


@pytest.mark.slow
def test_demo_decisions_match_diffusers_hook(tiny_demo):
    """The decisions the demo prints are diffusers' hook's on the same pipeline, and half of them skip."""
    result, text, args, fbc_warnings = tiny_demo
    assert list(result.decisions) == ["cond"]
    decisions = [computed for computed, _ in result.decisions["cond"]]
    assert len(decisions) == args.steps == 28

    pipe = tiny_flux_pipeline(torch.float32, "cpu", args.seed)
    pipe.set_progress_bar_config(disable=True)
    record = record_hook_decisions(pipe.transformer, THRESHOLD)
    pipe(**generation_kwargs(pipe, args, tiny=True))
    assert decisions == record.decisions["cond"]
    assert 0.3 < result.skip_rate < 0.7
    # the per-step table shows each decision
    for step, (computed, diff) in enumerate(result.decisions["cond"], start=1):
        cell = f"{step:>3} {'C' if computed else 'S'} " + ("  -  " if diff is None else f"{diff:.3f}")
        assert cell in text


@pytest.mark.slow
def test_demo_summary_and_image(tiny_demo):
    """One graph per backend, no recompilation, a saved image of the requested size, every summary line."""
    result, text, args, fbc_warnings = tiny_demo
    assert result.graphs_plain == 1 and result.graphs_fbc == 1
    assert fbc_warnings == []  # (the plain generations call the model through another wrapper, knowingly)
    assert result.recompiles == 0
    from PIL import Image

    with Image.open(result.image_path) as image:
        assert image.size == (DEMO_SIZE, DEMO_SIZE)
    for line in ("skip rate", "plain torch.compile", "fbc_backend", "speedup", "dynamo graphs compiled",
                 "recompilations        : 0", f"image saved to        : {args.output}"):
        assert line in text
    assert result.seconds_plain > 0 and result.seconds_fbc > 0  # (speed is the benchmark's to measure, not a test's)
    # The speedup line says on how many threads it was measured and whether its repeats agree.
    assert f"x on {torch.get_num_threads()} torch thread(s); " in text
    if args.repeats == 1:
        assert "one run of each" in text
    elif result.spread > TRUSTED_SPREAD:
        assert f"NOT to be trusted: repeats of one kind differ by up to {result.spread:.0%}" in text
    else:
        assert f"repeats agree within {result.spread:.0%}" in text


@pytest.mark.slow
def test_demo_loads_saved_pipeline_with_model(tmp_path):
    """``--model DIR`` loads a pipeline written by ``save_pretrained`` (no text encoders saved) in a new process.
    At threshold 0 nothing is skipped and the saved image is the plain-compile generation's, pixel for pixel."""
    saved = tmp_path / "tiny-flux"
    build_pipeline("flux").save_pretrained(saved)
    image = tmp_path / "img.png"
    done = _cli("demo", "--model", str(saved), "--steps", "6", "--repeats", "1", "--threshold", "0",
                "--output", str(image))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"FluxPipeline from {saved}" in done.stdout
    assert "context 'cond'" in done.stdout and "recompilations        : 0" in done.stdout
    assert "skip rate             : 0/6" in done.stdout
    assert "mean |difference| 0.00 / 255" in done.stdout
    assert image.is_file()


def test_help():
    for args in (["--help"], ["demo", "--help"]):
        done = _cli(*args)
        assert done.returncode == 0, done.stderr
        assert "usage: python -m fbc_compile" in done.stdout
    for option in ("--threshold", "--steps", "--device", "--dtype", "--model", "--output", "--seed"):
        assert option in done.stdout


@pytest.mark.parametrize("model, expected", [
    ("/nonexistent/fbc-demo-model", "no such directory"),
    ("fbc-compile-tests/not-a-cached-model", "not in the local Hugging Face cache"),
])
def test_demo_missing_model_is_a_clear_error(model, expected, capsys):
    assert main(["demo", "--model", model]) == 2
    err = capsys.readouterr().err
    assert expected in err and repr(model) in err and "Nothing is downloaded" in err


def test_demo_directory_without_pipeline(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path)]) == 2
    assert "no model_index.json" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--threshold", "-0.1"], "--threshold: threshold must be a real number >= 0"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--repeats", "0"], "--repeats must be a positive integer"),
    (["--height", "-8"], "--height must be a positive integer"),
    (["--device", "gpu7"], "--device 'gpu7'"),
])
def test_demo_invalid_options(argv, expected, capsys):
    assert main(["demo", *argv]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--dtype", "float64"], ["demo", "--steps", "many"], []])
def test_demo_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: fbc-compile" in capsys.readouterr().err  # (called as the console script would)
