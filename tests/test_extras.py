"""The core install and its extras: every core command runs with the extras' packages unimportable, and a command
whose extra is missing says which one to install, in one line, before it does any work.

A package is made unimportable in a child process by `sys.modules[name] = None` (Python's own way to block an
import: `import name` then raises ModuleNotFoundError), so the tests need no second environment; the installed
wheel with the core alone is checked by scripts/wheel_check.sh in CI.
"""

import json
import subprocess
import sys

import pytest

from clipblip.errors import ClipBlipError
from clipblip.extras import require

# The extras' packages (import names); huggingface_hub is absent: tokenizers, a core dependency, needs it.
EXTRAS = ("fastapi", "uvicorn", "starlette", "python_multipart", "multipart", "faiss", "matplotlib", "sacrebleu",
          "webdataset", "pyarrow", "onnx", "onnxruntime", "transformers")

# Runs `clipblip` commands in one process: `block` is unimportable from the start, each case's own list only while
# the case runs. Prints one [exit code or exception, stderr] per case. The alarm: a command that does not stop at
# its missing extra (the old code ran all of `compare`) fails in a minute, not at the suite's timeout.
_RUNNER = """
import contextlib, io, json, signal, sys
def _late(*_):
    raise TimeoutError("still running after 60 s")
signal.signal(signal.SIGALRM, _late)
spec = json.loads(sys.argv[1])
for name in spec["block"]:
    sys.modules[name] = None
from clipblip.cli import main
results = []
for blocked, argv in spec["cases"]:
    before = {name: sys.modules.get(name, KeyError) for name in blocked}
    sys.modules.update({name: None for name in blocked})
    err = io.StringIO()
    signal.alarm(60)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
    except BaseException as e:
        rc = f"raised {type(e).__name__}: {e}"
    signal.alarm(0)
    for name, module in before.items():
        sys.modules.pop(name) if module is KeyError else sys.modules.__setitem__(name, module)
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def _run(cases, block=()) -> list:
    spec = json.dumps({"block": list(block), "cases": [[list(b), [str(a) for a in argv]] for b, argv in cases]})
    done = subprocess.run([sys.executable, "-c", _RUNNER, spec], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("extras_images")
    for i, colour in enumerate(("red", "blue")):
        Image.new("RGB", (36 + 4 * i, 32), colour).save(d / f"{colour}.png")
    return d


def test_require_gives_the_module_or_names_the_extra():
    assert require("json", "serve", "x") is json
    with pytest.raises(ClipBlipError) as e:
        require("clipblip_test_no_such_module", "index", "clipblip index")
    assert str(e.value) == "clipblip index needs the index extra: pip install 'clipblip[index]'"


def test_require_does_not_blame_the_extra_for_a_broken_install(tmp_path, monkeypatch):
    # installed, but one of its own imports fails: installing the extra again would not help, its error does
    (tmp_path / "clipblip_test_broken.py").write_text("import clipblip_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="clipblip_test_absent_dependency"):
        require("clipblip_test_broken", "eval", "clipblip compare")


def test_core_commands_run_without_any_extra(images, tiny_clip_dir, tiny_blip_dir, tmp_path):
    red, blue = images / "red.png", images / "blue.png"
    clip, blip = ["-m", tiny_clip_dir], ["-m", tiny_blip_dir]
    commands = {
        "models": ["models"],
        "classify": ["classify", red, blue, "--labels", "red", "blue", *clip],
        "embed": ["embed", "--images", red, blue, "--texts", "a red square", "--output", tmp_path / "e.safetensors",
                  *clip],
        "search": ["search", "red", "--images", red, blue, *clip],
        "score": ["score", red, "a red square", *clip],
        "rerank": ["rerank", "red", red, blue, *clip],
        "caption": ["caption", red, *blip],
        "ask": ["ask", red, "what color?", *blip],
        "match": ["match", red, "a red square", "a blue square", *blip],
        "convert": ["convert", tiny_clip_dir, tmp_path / "native"],
        "convert --to hf": ["convert", tiny_blip_dir, tmp_path / "hf", "--to", "hf", "--parts", "decoder"],
    }
    results = _run([((), argv) for argv in commands.values()], block=EXTRAS)
    failed = {name: r for name, r in zip(commands, results) if r[0] != 0}
    assert failed == {}
    assert (tmp_path / "e.safetensors").is_file() and (tmp_path / "hf" / "config.json").is_file()


def test_a_missing_extra_is_named_in_one_line_before_the_work(images, tiny_clip_dir, tiny_blip_dir, tmp_path):
    import clipblip.index

    index = tmp_path / "index"
    clipblip.index.build(images, index, str(tiny_clip_dir), progress=False)
    cases = [  # (unimportable, command, the extra it names); OUT: a folder no command gets far enough to make
        (["fastapi"], ["serve", "--port", "0"], "serve"),
        (["uvicorn"], ["serve", "--port", "0"], "serve"),
        (["python_multipart", "multipart"], ["serve", "--port", "0"], "serve"),
        (["faiss"], ["index", "build", images, "--out", "OUT", "-m", tiny_clip_dir], "index"),
        (["faiss"], ["index", "build", images, "--out", "OUT", "-m", tiny_clip_dir, "--threads", "1"], "index"),
        (["faiss"], ["index", "search", index, "red"], "index"),
        (["matplotlib"], ["compare", "--n", "2", "--out", "OUT"], "eval"),
        (["sacrebleu"], ["compare", "--n", "2", "--out", "OUT"], "eval"),
        (["matplotlib"], ["capfilt", "--data", images, "--out", "OUT", "--captioner", tiny_blip_dir], "eval"),
        (["webdataset"], ["data", "pack", images, "--out", "OUT"], "train"),
        (["webdataset"], ["capfilt", "--data", images, "--out", "OUT", "--captioner", tiny_blip_dir, "--shards", "2"],
         "train"),
    ]
    outs = [tmp_path / f"out{i}" for i in range(len(cases))]
    results = _run([(b, [out if a == "OUT" else a for a in argv]) for (b, argv, _), out in zip(cases, outs)])
    for (blocked, argv, extra), (rc, err), out in zip(cases, results, outs):
        lines = err.strip().splitlines()
        assert rc == 1 and len(lines) == 1, (blocked, argv, rc, err)
        assert lines[0].startswith("clipblip: error: "), lines
        assert lines[0].endswith(f" needs the {extra} extra: pip install 'clipblip[{extra}]'"), lines
        made = sorted(p.name for p in out.rglob("*")) if out.exists() else []
        assert made in ([], ["rejects.jsonl"]), (argv, made)  # data pack opens its (empty) rejects list first
