# Every target creates .venv and installs what it needs; nothing has to be installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision pair that runs on CPU (and CUDA where present); override for other platforms.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

STAMP  := $(VENV)/.reco-installed

.PHONY: demo web test test-slow bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml requirements/samples.txt | $(PY)
	$(PIP) install $(TORCH)
	$(PIP) install -e ".[dev,index,distributed,crf,web,train]"
	$(PIP) install --no-deps -r requirements/samples.txt
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reco demo

web: $(STAMP)
	$(VENV)/bin/reco demo --web

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest --durations=25 $(PYTEST_ARGS)

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/reco bench models
	$(VENV)/bin/reco bench coseg
	$(VENV)/bin/reco bench index
	$(VENV)/bin/reco bench segment

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
