# facegen: `make run` installs the serving dependencies and starts the service on the bundled default model
# (HTTPS on port 8443, self-signed unless TLS_CERT_FILE/TLS_KEY_FILE are set); `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files so a second `make run` starts at once, and a changed requirements file reinstalls.
$(VENV)/.serving: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-train.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@ $(VENV)/.serving

install: $(VENV)/.serving
install-dev: $(VENV)/.dev

# Ctrl-C stops it and deletes the self-signed certificate and the metrics folder it made at start.
run: $(VENV)/.serving
	$(BIN)/gunicorn -c gunicorn.conf.py

# The gallery tests drive Debian's chromium (apt-get install chromium); CI installs it in .ci/run.
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
