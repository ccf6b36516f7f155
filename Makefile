# The two README commands: `make run` and `make test`. Both create ./.venv
# with the interpreter named by PYTHON (3.11 or newer) when it is missing and
# reinstall the project into it whenever pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run run-cluster stop-cluster test lint format clean clients debian-tools

# The Kafka client matrix (tests/kafka_clients/) runs every client in a
# virtualenv of its own: confluent-kafka 2.16 and 2.0, kafka-python 2.3 and 3
# cannot share one. One requirements file per client; a venv is rebuilt when
# its file changes, so the target is quick when they are present.
CLIENT_REQS   := $(wildcard tests/kafka_clients/requirements/*.txt)
CLIENTS_DIR   := .venv-clients
CLIENT_STAMPS := $(patsubst tests/kafka_clients/requirements/%.txt,$(CLIENTS_DIR)/%/.installed,$(CLIENT_REQS))

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tailrace needs Python 3.11 or newer; set PYTHON=...")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/tailrace broker --listen 127.0.0.1:7420 --kafka-listen 127.0.0.1:9092 --data-dir ./data

# Cluster mode on loopback: one etcd (127.0.0.1:2379) and brokers 1-3
# (127.0.0.1:7421-7423, Kafka 9093-9095), data, logs and PIDs under
# ./data/cluster; stop-cluster stops them by the recorded PIDs.
# docs/operations.md, "Running a cluster".
run-cluster: $(STAMP)
	@$(MAKE) --no-print-directory debian-tools DEBIAN_TOOLS=etcd:etcd-server
	$(BIN)/python tools/run_cluster.py start --dir ./data/cluster

stop-cluster: $(STAMP)
	$(BIN)/python tools/run_cluster.py stop --dir ./data/cluster

$(CLIENTS_DIR)/%/.installed: tests/kafka_clients/requirements/%.txt
	rm -rf $(CLIENTS_DIR)/$*
	$(PYTHON) -m venv $(CLIENTS_DIR)/$*
	$(CLIENTS_DIR)/$*/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

clients: $(CLIENT_STAMPS)

# Debian packages the tests drive: kcat (1.7.1, librdkafka 2.0.2) for the
# kcat tests; chromium and chromium-driver for the console's browser tests
# (selenium, in the test extra); etcd-server (3.4, the `etcd` binary) for the
# cluster tests and `make run-cluster`; nftables and iproute2 for the network
# faults of the cluster scenarios (broker/faultkit/netns.py). Installed with
# apt-get where missing, one `apt-get update` first (CI runs as root;
# elsewhere through sudo).
DEBIAN_TOOLS := kcat:kcat chromium:chromium chromedriver:chromium-driver etcd:etcd-server nft:nftables ip:iproute2

debian-tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$missing; fi

# Two xdist workers, one per core of the 2-core CI machine: most tests wait on
# processes, sockets and timers, so the suite takes 9-10 minutes, not 11.5
# (quiet machine, 2026-12-06: 543 s with -n 2 against about 685 s serial).
test: $(STAMP) clients debian-tools
	$(BIN)/ruff check broker client testing tests tools
	$(BIN)/python -m pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check broker client testing tests tools
	$(BIN)/ruff format --check broker client testing tests tools

format: $(STAMP)
	$(BIN)/ruff format broker client testing tests tools
	$(BIN)/ruff check --fix broker client testing tests tools

clean:
	rm -rf $(VENV) $(CLIENTS_DIR) .pytest_cache .ruff_cache .hypothesis build *.egg-info
