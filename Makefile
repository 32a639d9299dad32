# callconnect: one command per job. The lab and the tests need root (chroot,
# mount, tcpdump): run them with sudo, or as root as CI does.

VENV := .venv
PY := $(VENV)/bin/python
LAB := sip-lab/lab
# make demo BACKEND=freeswitch runs the demo on the lab's FreeSWITCH instead.
BACKEND ?= asterisk
ifeq ($(BACKEND),freeswitch)
CONFIG := sip-lab/callconnect-freeswitch.toml
else ifeq ($(BACKEND),asterisk)
CONFIG := sip-lab/callconnect.toml
else
$(error BACKEND must be asterisk or freeswitch, not $(BACKEND))
endif
HOST_PACKAGES := sip-tester debootstrap espeak-ng sox tcpdump iproute2 systemd python3-venv
# The venv's Python: the distribution's own, as on a PBX host (README,
# "Installing on an Asterisk host"). Debian builds it with PGO and LTO, and the
# daemon spends less CPU a call on it than on a plain build such as pyenv's,
# which may come first on PATH ("Performance"). PYTHON=... picks another.
PYTHON ?= /usr/bin/python3

.PHONY: install demo test unit lint openapi daemon bench soak lab-up lab-down lab-status clean

# Everything a fresh machine needs: host packages, the Python package with its
# test tools in .venv, the lab's Asterisk root (built once, ~1 minute) and its
# FreeSWITCH (built once from the vendored sources into /var/cache, ~3 minutes).
install: $(VENV)/.installed
	@$(LAB) install

$(VENV)/.installed: pyproject.toml
	@missing=""; for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "[install] apt packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "[install] $(PYTHON) is missing or older than Python 3.11: make PYTHON=/path/to/python3 install"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "[install] $(PYTHON) -m venv failed: apt-get install python3-venv"; exit 1; }
	@echo "[install] Python package and test tools into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

# A real call connect on the lab: A answers, hears the whisper, B is dialed,
# they talk for 8 seconds, the call is recorded and the result printed.
demo: $(VENV)/.installed
	@$(LAB) up $(BACKEND)
	$(VENV)/bin/callconnect --config $(CONFIG) call \
	  --leg-a +27115550101 --leg-b +27115550202 \
	  --whisper "Connecting you to John Smith from the website form" \
	  --time-limit 8 --wait

# Both labs run during the tests (their ports differ): tests/lab on Asterisk,
# tests/fslab on FreeSWITCH.
test: install lint
	@$(LAB) up
	@$(PY) -m pytest -q -rfE; status=$$?; $(LAB) down; exit $$status

# What runs without root or the lab: unit tests, the FreeSWITCH backend
# against its Event Socket peer, and the API fuzzed from its OpenAPI document.
unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit tests/esl tests/api

# Style and types, then the structure: no import cycles in controller/ (imports
# under TYPE_CHECKING and in functions count), no module over 500 lines, and
# Asterisk's words only in its backend. Every structural check reports before
# lint fails.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check controller tests bench tools
	$(VENV)/bin/mypy
	@status=0; \
	$(PY) -m tools.check_cycles controller || status=1; \
	$(PY) -m tools.check_layout controller || status=1; \
	exit $$status

# Load benchmark on the lab: the controller next to a bare-AMI control lane,
# every figure with its goal; writes docs/bench/latest.json, latest.png and
# latest-inbound.png. ~30 minutes (3 runs of both lanes, a step with the daemon's
# CPU counted by part, the overload step, then the inbound lanes).
# Then the components' CPU (bench.micro), hot and cold (bench.cold), and the
# daemon on a store of 1 M calls (bench.store: docs/bench/store.json; its store
# is built once, ~12 GiB in .bench/store/cache). Brings the lab down when it
# ends, as make test does.
# `lab up asterisk` installs the Asterisk lab, all the bench drives (make
# install would build the FreeSWITCH lab too: tens of minutes on a new machine).
bench: $(VENV)/.installed
	@$(LAB) up asterisk
	@$(PY) -m bench.run && $(PY) -m bench.micro && $(PY) -m bench.cold && $(PY) -m bench.store; status=$$?; \
	  $(LAB) down asterisk; exit $$status

# The soak run for longer than make test's 150 s: calls for 10 minutes, with an
# Asterisk restart and a webhook outage in the middle; memory must stay flat.
soak: $(VENV)/.installed
	@$(LAB) up asterisk
	CALLCONNECT_SOAK_SECONDS=600 $(PY) -m pytest -q -s tests/lab/test_soak.py

# The API's OpenAPI document, checked in; a lab test fails when it is stale.
openapi: $(VENV)/.installed
	$(PY) -m controller.api.openapi > docs/openapi.json

# The daemon on the lab, in the foreground (API on 127.0.0.1:8080, token "lab");
# BACKEND=freeswitch drives the lab's FreeSWITCH.
daemon: $(VENV)/.installed
	@$(LAB) up $(BACKEND)
	CALLCONNECT_API_TOKENS=lab CALLCONNECT_STORE_PATH=.lab/callconnect.sqlite3 \
	  $(VENV)/bin/callconnect --config $(CONFIG) --log-level info daemon

lab-up: install
	@$(LAB) up

lab-down:
	@$(LAB) down

lab-status:
	@$(LAB) status

clean: lab-down
	rm -rf $(VENV) .lab .bench .pytest_cache .mypy_cache .ruff_cache
