# fallbackkit — make install | demo | test | bench
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean sysdeps

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml tests/fhir_engine/package-lock.json
	@$(MAKE) --no-print-directory sysdeps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	npm ci --prefix tests/fhir_engine --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

# libzbar0 is the second QR decoder (pyzbar); chromium drives the review app's browser tests;
# Node.js + npm run the FHIR engine the export tests send bundles to (tests/fhir_engine);
# openssl makes the review station's own TLS certificate for other PCs (review/tls.py).
sysdeps:
	@missing=""; \
	ldconfig -p | grep -q 'libzbar.so.0' || missing="$$missing libzbar0"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing — run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

demo: install
	$(PY) -m fallbackkit.demo

test: install
	$(VENV)/bin/ruff check fallbackkit tests bench tools
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
