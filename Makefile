# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create .venv (see scripts/venv.sh), build the extension and run from it.
.PHONY: setup demo test lint bench wheel wheel-check clean gpu-torch-check

setup:
	@bash scripts/venv.sh

demo: setup
	.venv/bin/python -m fastext run tour

test: setup
	.venv/bin/python -m pytest -q  # tests/ and the docstring examples in fastext/

lint: setup
	.venv/bin/ruff check fastext tests bench scripts

bench: setup
	.venv/bin/python -m fastext.bench optim --json bench/results/optim-cpu.json

# The CUDA build against the GPU machine's torch (2.11.0), and the native ops' CPU tests.
gpu-torch-check:
	@bash scripts/gpu_torch_check.sh

wheel: setup
	rm -rf dist
	.venv/bin/pip wheel --no-build-isolation --no-deps -w dist .

# The wheel unpacked on its own: imports, built against this torch, ops agree with PyTorch.
wheel-check: wheel
	.venv/bin/python scripts/wheel_check.py dist/fastext-*.whl

clean:
	rm -rf build dist .venv
