# satoshiware.scnode — the two entry points are `make lab` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Debian packages the lab and the tests need on the machine that runs them.
DEB_PACKAGES := python3 python3-venv python3-dev build-essential git rsync openssh-client \
	debootstrap systemd-container slirp4netns nftables socat zstd iproute2 iptables curl \
	ca-certificates python3-aiohttp python3-zmq python3-bitcoinlib chromium age prometheus
# (python3-aiohttp, -zmq and -bitcoinlib let the release mirror's launchers run on the controller
#  with Debian's python3, exactly as they run inside the trixie test hosts; chromium is the
#  browser the dashboard tests drive through Playwright; age is the backups' encryption
#  fallback the module tests exercise; prometheus brings promtool, which checks and unit-tests
#  the monitoring role's alert rules)

COLLECTION_LINK := collections/ansible_collections/satoshiware/scnode

# Hard ceilings (seconds) per test stage: a hang fails that stage loudly, with the stage's name,
# instead of silently eating CI's whole budget. Each is well above the stage's measured time.
# The test-host stage: the whole node converged once (site.yml, demo, second run) and the tests on
# it, plus the small labs that fit; the longer own-lab tests are in make test-long. pytest and
# molecule run beside the test-host stage (tests/stages.sh), so their ceilings allow for that.
STAGE_TIMEOUT_PYTEST    ?= 2400
STAGE_TIMEOUT_TESTHOSTS ?= 4200
STAGE_TIMEOUT_MOLECULE  ?= 2400
STAGE := timeout --kill-after=30 --verbose

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

# ---------------------------------------------------------------- set-up
.PHONY: deps
deps:  ## install the Debian packages (root; only what is missing)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml $(wildcard apps/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . $(if $(wildcard apps/pyproject.toml),-e ./apps[test],)
	touch $@

.PHONY: venv
venv: $(VENV)/.installed  ## create the project virtualenv

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

.PHONY: collection-link
collection-link: $(COLLECTION_LINK)  ## make roles and modules resolve as satoshiware.scnode.*

.PHONY: setup
setup: deps venv collection-link

# ---------------------------------------------------------------- the lab (main job)
.PHONY: lab
lab: setup  ## build the test hosts, converge site.yml on them, seed the demo, print what is up
	$(PY) -m scnode_lab up
	$(BIN)/ansible-playbook playbooks/site.yml
	$(PY) -m scnode_lab demo
	$(PY) -m scnode_lab status

.PHONY: lab-down
lab-down: venv  ## remove the lab: containers, namespaces, mounts
	$(PY) -m scnode_lab down

# ---------------------------------------------------------------- tests
# After lint and sanity: the test-host stage in one lane, pytest then molecule in the other
# (tests/stages.sh says why and how); the image both lanes' test hosts use is built first.
.PHONY: test
test: setup lint sanity lab-image  ## every test and gate CI runs
	MAKE="$(MAKE)" tests/stages.sh

.PHONY: lint
lint: setup  ## ruff, mypy, yamllint, ansible-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production
	$(PY) tests/assurance/secrets_scan.py

.PHONY: sanity
sanity: setup  ## ansible-test sanity + units from a synced copy at an ansible_collections path
	tests/ansible-test.sh sanity
	tests/ansible-test.sh units

.PHONY: lab-image
lab-image: setup  ## build (or reuse the cached) Debian 13 image of the test hosts
	$(PY) -m scnode_lab image

.PHONY: pytest
pytest: setup  ## unit, integration and browser tests (ledger tests on SQLite and PostgreSQL)
	url="$$(timeout 300 tests/postgres.sh)" && SCNODE_TEST_POSTGRES_URL="$$url" \
		$(STAGE) $(STAGE_TIMEOUT_PYTEST) $(BIN)/pytest -q -n 2 --dist loadfile -m "not testhosts" tests

# One at a time: the modules on the shared converged default lab must share one pytest session
# (on two xdist workers a second worker converged the default lab again, CI run of 10:42).
.PHONY: testhosts
testhosts: setup lab-image  ## test-host tests (the converged default lab, and small labs of their own)
	$(STAGE) $(STAGE_TIMEOUT_TESTHOSTS) $(BIN)/pytest -q --durations=15 \
		-m "testhosts and not long_lab" tests

.PHONY: test-long
test-long: setup lab-image  ## test-host tests beyond CI's budget (fleet update, proxmox NAT, wireguard, monitoring labs)
	$(BIN)/pytest -q -m long_lab tests

.PHONY: molecule
molecule: setup lab-image  ## converge every role's molecule scenario on test hosts
	$(STAGE) $(STAGE_TIMEOUT_MOLECULE) tests/molecule.sh

# Chain-facing tests against real regtest daemons (docs/real-daemons.md); not part of CI.
REAL_DAEMON_TESTS := tests/integration/chain_api tests/integration/exchange_deposits \
	tests/integration/exchange_withdrawals tests/integration/exchange_e2e \
	tests/integration/exchange_solvency tests/integration/ops_backup tests/integration/ops_sweep \
	tests/simnet/chain/test_real_daemon_layer.py tests/simnet/chain/test_real_vs_stand_in.py

.PHONY: test-real
test-real: setup  ## chain-facing tests against real bitcoind/azcoind (SCNODE_REAL_BITCOIND/_AZCOIND)
	@if [ -z "$$SCNODE_REAL_BITCOIND$$SCNODE_REAL_AZCOIND" ]; then \
		echo "test-real: set SCNODE_REAL_BITCOIND and/or SCNODE_REAL_AZCOIND (docs/real-daemons.md)" >&2; \
		exit 2; fi
	url="$$(timeout 300 tests/postgres.sh)" && SCNODE_TEST_POSTGRES_URL="$$url" \
		$(BIN)/pytest -q -rs -n 2 --dist loadfile -m "not testhosts" $(wildcard $(REAL_DAEMON_TESTS))

.PHONY: build
build: setup  ## build the collection tarball into dist/
	mkdir -p dist
	$(BIN)/ansible-galaxy collection build --force --output-path dist .

.PHONY: clean
clean:  ## remove generated files (not the lab; see lab-down)
	rm -rf collections dist build tests/output .ansible .pytest_cache .mypy_cache .ruff_cache
