# Two commands do all the set-up: `make demo` and `make test` each build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PIN := $(VENV)/torch-pin.txt

.PHONY: demo test test-slow test-readme lint bench wheel-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, and only when it is missing: the pin takes the CPU wheel; a torch already there (CUDA) is kept.
# Every later install holds torch at whatever version is now installed, so that torchvision (for the open_clip
# reference) resolves to the matching release instead of upgrading torch.
$(PIN): $(PY) constraints.txt
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -c constraints.txt torch
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(PIN)

# The package with one extra, editable: `all` for the demo (it serves, indexes and draws), `test` for the suite
# and the tools (every extra, the reference libraries, pytest, ruff). One stamp per extra.
$(VENV)/.installed-%: $(PIN) pyproject.toml
	$(PIP) install -c $(PIN) -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-all
	$(PY) -m clipblip.demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests bench scripts

test-slow: $(VENV)/.installed-test
	$(PY) -m pytest -q -m slow

# The README's blocks in order, in a fresh copy, after `make demo` (tests/test_readme.py; minutes, so not in `test`)
test-readme: $(VENV)/.installed-test
	$(PY) -m pytest -q -m readme tests/test_readme.py

bench: $(VENV)/.installed-test
	$(PY) bench/run_all.py

# The built wheel, installed with the core alone in a fresh environment, captions and classifies (CI runs it).
wheel-check: $(PIN)
	scripts/wheel_check.sh

clean:
	rm -rf $(VENV) build src/*.egg-info
