# ablate: every target sets up its own environment (.venv) first, so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ABLATE := $(BIN)/ablate
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

STUDY   ?= studies/demo.yaml
DATASET ?= fashion-mnist
WORKERS ?= 1
# profile defaults (override: make profile BACKBONE=vgg16 ATTENTION=se,cbam)
BACKBONE  ?= cnn,vgg16
ATTENTION ?= none,se,cam,sam,cbam,local,eca,coord,gc,nonlocal,simam
POSITION  ?= after_relu
REDUCTION ?= 16
INPUT     ?= 3x32x32

.DEFAULT_GOAL := help
.PHONY: help setup lock lint test test-slow test-all gpu-check demo data study plan status report dashboard profile bench clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-10s %s\n", $$1, $$2}'

# LOCK=requirements.lock (default): the exact versions the checked-in report was made with, so a rerun on the
# same CPU model repeats it bit for bit; LOCK= (empty): the newest versions pyproject.toml allows.
LOCK ?= requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(LOCK)" ]; then \
	  $(BIN)/python -m pip install -q -r $(LOCK) && $(BIN)/python -m pip install -q --no-deps -e '.[dev]' && \
	  $(BIN)/python -m pip check; \
	else $(BIN)/python -m pip install -q -e '.[dev]'; fi
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install ablate with its dev tools (the exact versions of requirements.lock)

lock: ## rewrite requirements.lock from a fresh unpinned install (then commit it with the report it made)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '1,2p' requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^#'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

lint: setup ## ruff: pyflakes, pycodestyle and import order, line length 120 (settings in pyproject.toml)
	$(BIN)/ruff check .

test: setup ## run the fast test suite (CPU, minutes)
	$(BIN)/python -m pytest -q

test-slow: setup ## run the slow tests (multi-process workers, kill/resume, PostgreSQL when available)
	$(BIN)/python -m pytest -q -m slow

test-all: setup ## every test but the GPU ones
	$(BIN)/python -m pytest -q -m "not gpu"

gpu-check: setup ## CUDA machines, about a minute: profile 2 arms, train 1 epoch on the GPU vs the CPU, print figures
	$(BIN)/python -m ablate.gpu_check

demo: setup data ## the main job on CPU: studies/demo.yaml (Fashion-MNIST, 5 arms x 3 paired seeds) + its report
	$(ABLATE) plan studies/demo.yaml --no-timing
	$(ABLATE) run studies/demo.yaml --workers 2
	$(ABLATE) report studies/demo.yaml

data: setup ## fetch/prepare DATASET (default fashion-mnist): download, else offline from Debian's dataset-fashion-mnist
	$(ABLATE) data fetch $(DATASET) || { [ "$(DATASET)" = fashion-mnist ] && command -v apt-get >/dev/null && \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist && $(ABLATE) data fetch $(DATASET); }

plan: setup ## arms, trial count and cost estimate of STUDY, before anything trains
	$(ABLATE) plan $(STUDY)

study: setup ## run STUDY (resumes; WORKERS=N for local worker processes)
	$(ABLATE) run $(STUDY) --workers $(WORKERS)

status: setup ## trials per phase of STUDY
	$(ABLATE) status $(STUDY)

report: setup ## regenerate reports/<study>/ from STUDY's storage (no retraining)
	$(ABLATE) report $(STUDY)

dashboard: setup ## optuna-dashboard on STUDY's storage at http://127.0.0.1:8080
	$(ABLATE) dashboard $(STUDY)

profile: setup ## params / MACs / latency of every arm, no training (BACKBONE= ATTENTION= POSITION= REDUCTION= INPUT=)
	$(ABLATE) profile --backbone $(BACKBONE) --attention $(ATTENTION) --position $(POSITION) --reduction $(REDUCTION) --input $(INPUT)

bench: setup ## ref000 DataLoader loop vs ablate's engine: samples/s, ratio, harness overhead (minutes on CPU)
	$(ABLATE) bench

clean: ## remove caches (keeps .venv, data, runs and reports)
	rm -rf .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
