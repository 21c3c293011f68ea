# Every target creates .venv and installs what it needs; nothing has to be installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision pair that runs on CPU (and CUDA where present); override for other platforms.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

# Each target installs only what it runs: the demo (torch, reco, the DINOv2 importer, the index,
# the sample photos), the web app (+ Gradio), everything else (+ tests, training, Ray, DenseCRF).
DEMO_STAMP := $(VENV)/.reco-demo
WEB_STAMP  := $(VENV)/.reco-web
STAMP      := $(VENV)/.reco-installed

.PHONY: demo web test test-slow bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml requirements/samples.txt | $(PY)
	$(PIP) install $(TORCH)
	$(PIP) install -e ".[onnx,index]"
	$(PIP) install --no-deps -r requirements/samples.txt
	touch $@

$(WEB_STAMP): $(DEMO_STAMP)
	$(PIP) install -e ".[onnx,index,web]"
	touch $@

$(STAMP): $(WEB_STAMP)
	$(PIP) install -e ".[dev,index,distributed,crf,web,train]"
	touch $@

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/reco demo

web: $(WEB_STAMP)
	$(VENV)/bin/reco demo --web

# A worker per core (pytest-xdist), each test file on one worker (its module fixtures built once),
# files in the order tests/conftest.py gives (longest first), not re-sorted by their number of tests.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/reco bench models
	$(VENV)/bin/reco bench coseg
	$(VENV)/bin/reco bench index
	$(VENV)/bin/reco bench segment

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
