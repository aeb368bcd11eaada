"""The built wheel, installed (not editable) into a clean virtual environment, ships the CUDA sources."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_kernels(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is needed to build the wheel offline")
    sources = sorted(p.name for p in (ROOT / "kernels").glob("*.cu"))
    assert sources, "no CUDA sources under kernels/"
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        check=True,
    )
    wheels = list(dist.glob("recon-*.whl"))
    assert len(wheels) == 1
    import zipfile

    shipped = set(zipfile.ZipFile(wheels[0]).namelist())
    from recon.simulate.mni152 import TEMPLATE_FILES

    for name in [*(n for n, _ in TEMPLATE_FILES.values()), "NOTICE.txt"]:
        assert f"recon/simulate/data/mni152/{name}" in shipped, f"the wheel lacks the MNI152 file {name}"
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a PYTHONPATH with the source tree would shadow the wheel
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])], check=True, env=clean)
    probe = (
        "import importlib.resources as r, recon, sys;"
        "k = r.files('recon') / 'kernels';"
        "print(recon.__file__);"
        "print(','.join(sorted(p.name for p in k.iterdir() if p.name.endswith('.cu'))));"
        "print(recon.kernels_dir())"
    )
    out = subprocess.run([str(py), "-c", probe], cwd=tmp_path, env=clean, check=True, capture_output=True, text=True).stdout.splitlines()
    assert str(env_dir) in out[0], "imported recon from the source tree, not the installed wheel"
    assert out[1].split(",") == sources
    assert out[2].startswith(str(env_dir))
