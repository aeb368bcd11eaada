# Sourced by scripts/demo and scripts/test: create or update the virtual environment.
# Usage: source scripts/_setup.sh [extras]   (extras e.g. "test")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${RECON_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

stamp="$VENV/.recon-installed-$EXTRAS"
want="$(cat pyproject.toml scripts/_setup.sh | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! python -c "import torch" >/dev/null 2>&1; then
    # Without a CUDA device take the CPU build (a bare `torch` resolves to a multi-GB CUDA build).
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      python -m pip install -q "torch>=2.1,<3"
    else
      python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch>=2.1,<3"
    fi
  fi
  spec="."
  [[ -n "$EXTRAS" ]] && spec=".[$EXTRAS]"
  echo "[setup] installing recon$([[ -n "$EXTRAS" ]] && echo "[$EXTRAS]")"
  python -m pip install -q -e "$spec"
  if [[ "$EXTRAS" == *test* ]]; then
    # fastMRI for cross-checks only; --no-deps keeps torchvision / lightning out.
    python -m pip install -q --no-deps "fastmri==0.3.0"
    # CuPy for the kernel tests, matching torch's CUDA major (12 for a CPU torch); an installed one is kept.
    if ! python -c "import cupy" >/dev/null 2>&1; then
      cuda_major="$(python -c 'import torch; print((torch.version.cuda or "12").split(".")[0])')"
      python -m pip install -q -e ".[cuda$cuda_major]"
    fi
  fi
  echo "$want" > "$stamp"
fi

# Peer tools from Debian used by tests and benchmarks (best effort: tests skip without them).
install_debian_tools() {
  local missing=()
  command -v bart >/dev/null 2>&1 || missing+=(bart)
  command -v ismrmrd_generate_cartesian_shepp_logan >/dev/null 2>&1 || missing+=(ismrmrd-tools)
  command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)  # runs the CUDA kernel source on the CPU (tests/kernel_harness)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  if ((${#missing[@]})) && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    echo "[setup] installing Debian tools: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
      || echo "[setup] could not install ${missing[*]}; the tests that need them will skip"
  fi
}

# The twixtools 0.24 sdist's example raw data (gre.dat, epi.dat: real Siemens files) for the
# TWIX tests, fetched once into a cache (best effort: tests/twix_files.py fetches it itself or
# skips with the reason).
cache_twix_examples() {
  local cache="${RECON_TWIX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recon/twixtools-0.24}"
  [[ -f "$cache/gre.dat" && -f "$cache/epi.dat" ]] && return 0
  mkdir -p "$cache" 2>/dev/null || return 0
  local tmp
  tmp="$(mktemp -d)"
  if python -m pip download -q --no-deps --no-binary :all: "twixtools==0.24" -d "$tmp" >/dev/null 2>&1 \
    && tar -xzf "$tmp/twixtools-0.24.tar.gz" -C "$tmp" twixtools-0.24/example_data/gre.dat twixtools-0.24/example_data/epi.dat; then
    cp "$tmp/twixtools-0.24/example_data/gre.dat" "$tmp/twixtools-0.24/example_data/epi.dat" "$cache/"
  else
    echo "[setup] could not fetch the twixtools 0.24 sdist; the TWIX tests will try again or skip"
  fi
  rm -rf "$tmp"
}
