"""GPU tests (marker `gpu`): run with `pytest -m gpu tests/gpu`; skipped without CUDA and CuPy."""
