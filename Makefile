# Two commands do all the set-up: `make demo` and `make test` each build .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.clipblip-installed

.PHONY: demo test test-slow lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, and only when it is missing: the pin takes the CPU wheel; a torch already there (CUDA) is kept.
# Then the package with its test extras, holding torch at whatever version is now installed so that
# torchvision (for the open_clip reference) resolves to the matching release instead of upgrading torch.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -c constraints.txt torch
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(PIP) install -c $(VENV)/torch-pin.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m clipblip.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build src/*.egg-info
