"""Run the README as a new user would: its ```bash and ```python blocks, in order, in a fresh copy of the repository,
after `make demo` (which the README asks for first). tests/test_readme.py runs it in CI.

A block runs as written unless an HTML comment on the line just above its fence says otherwise:

    <!-- readme-test: skip (why) -->                              not run; the why is printed
    <!-- readme-test: run with "steps=200" -> "steps=20" (why) -->  run with these texts replaced (each must occur)
    <!-- readme-test: serve 8000 (why) -->                        the first line serves on port 8000 until stopped:
                                                                  it runs in the background on a free port, the
                                                                  rest of the block against it, then it is stopped
    <!-- readme-test: serve 8000; "curl" -> "curl -f" (why) -->   parts combine, separated by ";"

Shell blocks run with `bash -e`, Python blocks with the venv's python, each in its own process. The copy gets the
files git would clone (tracked ones, and new ones git does not ignore, as they are in the working tree) and the
repository's .venv, linked (nothing is installed; its editable install is pointed at the copy's src/ by PYTHONPATH).

    .venv/bin/python scripts/readme_blocks.py              # list the blocks and what happens to each
    .venv/bin/python scripts/readme_blocks.py --run DIR    # run them in a copy made in DIR (empty or absent)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
WHY = re.compile(r"^(.*?)\s*\(([^()]+)\)$")
PAIR = re.compile(r'^"([^"]+)"\s*->\s*"([^"]*)"$')
RUN_LANGS = ("bash", "python")
BLOCK_TIMEOUT_S = 900  # a block stuck for this long is a failure, not a wait


class ReadmeError(Exception):
    """A directive the harness cannot follow, or a block that failed."""


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    action: str = "run"  # run | skip | serve
    why: str = ""
    replace: tuple[tuple[str, str], ...] = ()
    port: int = 0  # for serve: the port the block names

    def describe(self) -> str:
        first = self.code.strip().splitlines()[0] if self.code.strip() else ""
        how = {"run": "run", "skip": "SKIPPED", "serve": f"served in the background (port {self.port})"}[self.action]
        how += " with " + ", ".join(f"{a!r} -> {b!r}" for a, b in self.replace) if self.replace else ""
        return f"README.md:{self.line} {self.lang}: {how}" + (f" ({self.why})" if self.why else "") + f": {first}"

    def script(self) -> str:
        """The code as it runs: the directive's replacements made, each of which must find its text."""
        code = self.code
        for old, new in self.replace:
            if old not in code:
                raise ReadmeError(f"README.md:{self.line}: the directive replaces {old!r}, which the block no longer "
                                  "contains; update the directive")
            code = code.replace(old, new)
        return code


def parse_directive(text: str, line: int) -> dict:
    """The fields of Block that a directive's text sets; an unknown directive is an error (a typo must not pass)."""
    m = WHY.match(text)
    if not m:
        raise ReadmeError(f"README.md:{line}: a readme-test directive needs its reason in parentheses: {text!r}")
    fields: dict = {"why": m.group(2).strip(), "replace": []}
    for part in (p.strip() for p in m.group(1).split(";")):
        pair = PAIR.match(part.removeprefix("run with").strip())
        if pair:
            fields["replace"].append((pair.group(1), pair.group(2)))
        elif part == "skip" or (part.startswith("serve ") and part[6:].strip().isdigit()):
            fields.update(action=part.split()[0], port=int(part[6:]) if part != "skip" else 0)
        else:
            raise ReadmeError(f"README.md:{line}: unknown readme-test directive {part!r}: use 'skip (why)', "
                              "'run with \"old\" -> \"new\"; ... (why)' or 'serve PORT (why)'")
    if fields.get("action") == "skip" and fields["replace"]:
        raise ReadmeError(f"README.md:{line}: a skipped block has nothing to replace")
    fields["replace"] = tuple(fields["replace"])
    return fields


def blocks(text: str) -> list[Block]:
    """The README's bash and python blocks in order, each with the directive just above its fence (if any)."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if DIRECTIVE.match(lines[i]) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
                raise ReadmeError(f"README.md:{i + 1}: a readme-test directive must be just above a code fence")
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ReadmeError(f"README.md:{i + 1}: a code block that never ends")
        d = DIRECTIVE.match(lines[i - 1]) if i else None
        fields = parse_directive(d.group(1), i) if d else {}
        if m.group(1) in RUN_LANGS:
            found.append(Block(m.group(1), "\n".join(lines[i + 1:end]) + "\n", i + 1, **fields))
        elif d:
            raise ReadmeError(f"README.md:{i}: a readme-test directive above a block that is never run")
        i = end + 1
    return found


def fresh_copy(root: Path, dest: Path) -> None:
    """What a clone of the working tree would hold (tracked and non-ignored files, as they are now) and a .venv link."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = root / rel
        if src.is_file() and not src.is_symlink():  # a file deleted but not yet committed is not there
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    link_venv(root / ".venv", dest / ".venv")


def link_venv(venv: Path, dest: Path) -> None:
    """The repository's venv, seen from the copy: its folders linked, its few top-level files (pyvenv.cfg, the
    Makefile's install stamps) copied, so that `make -t` marks the installs done in the copy without touching the
    venv's own stamps, and make never reinstalls the package from the copy into the shared venv."""
    if not (venv / "bin" / "python").exists():
        raise ReadmeError(f"no {venv}: run `make test` once first (it creates the venv)")
    dest.mkdir()
    for entry in venv.iterdir():
        if entry.is_dir():
            (dest / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
        else:
            shutil.copy2(entry, dest / entry.name)


def environment(dest: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    # The venv's editable install points at the repository; the copy's own source must be what runs.
    env["PYTHONPATH"] = str(dest / "src")
    # One thread, as the test suite (tests/conftest.py): on a shared 2-core machine two make tiny ops far slower.
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def _run(cmd: list[str], dest: Path, env: dict, what: str, log) -> None:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=dest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=BLOCK_TIMEOUT_S)
    log(f"{what}: exit {proc.returncode} in {time.perf_counter() - start:.1f} s")
    if proc.returncode != 0:
        raise ReadmeError(f"{what} failed (exit {proc.returncode}); its output ends:\n{proc.stdout[-4000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(server: subprocess.Popen, port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ReadmeError(f"the server exited with {server.returncode} before it answered /healthz")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise ReadmeError(f"the server did not answer /healthz within {timeout_s:.0f} s")


def _serve(block: Block, code: str, dest: Path, env: dict, log) -> None:
    port = _free_port()  # the documented port may be taken on a shared machine
    first, _, rest = code.replace(str(block.port), str(port)).partition("\n")
    with open(dest / ".readme-serve.log", "w") as out:
        server = subprocess.Popen(["bash", "-c", "exec " + first], cwd=dest, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        _wait_healthy(server, port)
        (dest / ".readme-block.sh").write_text(rest)
        _run(["bash", "-e", ".readme-block.sh"], dest, env, f"README.md:{block.line} (against the server)", log)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_block(block: Block, dest: Path, env: dict, log) -> None:
    code = block.script()
    if block.action == "serve":
        _serve(block, code, dest, env, log)
        return
    name = ".readme-block.sh" if block.lang == "bash" else ".readme-block.py"
    (dest / name).write_text(code)
    cmd = ["bash", "-e", name] if block.lang == "bash" else [str(dest / ".venv/bin/python"), name]
    _run(cmd, dest, env, f"README.md:{block.line} ({block.lang})", log)


def run_readme(root: Path, dest: Path, log=print) -> list[Block]:
    """Copy the repository to dest, run `make demo`, then every block; returns the blocks skipped."""
    todo = blocks((root / "README.md").read_text())
    for b in todo:
        b.script()  # a stale directive fails now, not after minutes of running
    fresh_copy(root, dest)
    env = environment(dest)
    # The venv is installed already: -t marks make's install steps done (in the copy's own stamps), then the demo runs
    _run(["make", "-t", "demo"], dest, env, "make -t demo", log)
    _run(["make", "demo"], dest, env, "make demo", log)
    for b in todo:
        log(b.describe())
        if b.action != "skip":
            run_block(b, dest, env, log)
    return [b for b in todo if b.action == "skip"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, metavar="DIR", help="copy the repository to DIR and run the blocks there")
    args = ap.parse_args(argv)
    try:
        if args.run is None:
            for b in blocks((ROOT / "README.md").read_text()):
                print(b.describe())
            return 0
        args.run.mkdir(parents=True, exist_ok=True)
        if any(args.run.iterdir()):
            raise ReadmeError(f"{args.run} is not empty: give a new folder")
        run_readme(ROOT, args.run)
    except ReadmeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
