# ablate: every target sets up its own environment (.venv) first, so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ABLATE := $(BIN)/ablate

# profile defaults (override on the command line: make profile BACKBONE=vgg16 ATTENTION=se,cbam)
BACKBONE  ?= cnn,vgg16
ATTENTION ?= none,se,cam,sam,cbam,local,eca,coord,gc,nonlocal,simam
POSITION  ?= after_relu
REDUCTION ?= 16
INPUT     ?= 3x32x32

.DEFAULT_GOAL := help
.PHONY: help setup test test-all profile clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install ablate with its dev tools

test: setup ## run the fast test suite (CPU, minutes)
	$(BIN)/python -m pytest -q

test-all: setup ## run every test, slow ones included
	$(BIN)/python -m pytest -q -m "not gpu"

profile: setup ## params / MACs / latency of every arm, no training (BACKBONE= ATTENTION= POSITION= REDUCTION= INPUT=)
	$(ABLATE) profile --backbone $(BACKBONE) --attention $(ATTENTION) --position $(POSITION) --reduction $(REDUCTION) --input $(INPUT)

clean: ## remove caches (keeps .venv, data and runs)
	rm -rf .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
