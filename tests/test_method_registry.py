"""A method is one file plus one registry line: a toy method, registered in a scoped registry from
a file of its own, appears in `recon reconstruct --help`, runs through `recon reconstruct` and
`recon benchmark` with its own flag, is checked against its own needs and is built and refused
by `recon.methods.get` like every shipped method."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recon import method_checks, methods
from recon.acquisition import centered_region
from recon.cli import main
from recon.io.errors import InputError
from recon.pipeline import _cached_method

sys.path.insert(0, str(Path(__file__).parent))
from _baseline_data import column_mask, phantom_kspace  # noqa: E402

TOY = '''"""`toy`: the zero-filled image times a gain (a registry test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recon.methods.options import PartialFourierOptions
from recon.methods.spec import MethodSpec, Needs, option


@dataclass(frozen=True, kw_only=True)
class ToyOptions(PartialFourierOptions):
    gain: float = option(1.0, "factor on the zero-filled image (default: 1)", "--toy-gain")


class Toy:
    def __init__(self, inner: Any, gain: float) -> None:
        self.inner, self.gain = inner, gain

    def __call__(self, batch: Any) -> Any:
        return self.inner(batch) * self.gain


def build(options: ToyOptions, device: Any) -> Toy:
    from recon.methods import get

    return Toy(get("zero-filled", device=device, partial_fourier=options.partial_fourier), options.gain)


SPEC = MethodSpec("toy", "the zero-filled image times a gain", ToyOptions, build, needs=Needs(acs=6, matrix=(8, 8)))
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "toy_method.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    with methods.scoped():
        methods.register("toy", "toy_method")
        yield
    _cached_method.cache_clear()
    assert "toy" not in methods.available()


def test_toy_method_in_the_python_api_and_the_input_checks(toy: None) -> None:
    k, _, _ = phantom_kspace(4, 32, 24)
    mask = torch.from_numpy(column_mask(24, 2, 8))[None, None, None]
    batch = methods.ReconBatch(torch.from_numpy(k)[None] * mask, mask, torch.tensor([centered_region(24, 8)]), (24, 24))
    assert "toy" in methods.available() and methods.spec("toy").takes("gain")
    assert torch.equal(methods.get("toy", gain=2.0)(batch), 2 * methods.get("zero-filled")(batch))
    with pytest.raises(ValueError, match="method 'toy' takes no option 'gian'; valid options: partial_fourier, gain"):
        methods.get("toy", gian=2.0)
    masked = (k * column_mask(24, 2, 8))[None]
    method_checks.check_input("x.h5", masked, column_mask(24, 2, 8), centered_region(24, 8), "toy")
    with pytest.raises(InputError, match="toy: 4 ACS .* the method needs at least 6"):
        method_checks.check_input("x.h5", masked, column_mask(24, 2, 8), (10, 14), "toy")


def test_toy_method_on_the_command_line(toy: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["reconstruct", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "toy: the zero-filled image times a gain" in text
    assert "--toy-gain" in text and "factor on the zero-filled image (default: 1) (toy)" in text

    sim = tmp_path / "sim"
    assert main(["simulate", str(sim), "--volumes", "1", "--slices", "1", "--coils", "4", "--seed", "3100"]) == 0
    base = ["reconstruct", str(sim), "--acceleration", "4", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "toy"), "--method", "toy", "--toy-gain", "2"]) == 0
    assert main([*base, "--out", str(tmp_path / "zf")]) == 0
    name = next(sim.glob("*.h5")).name
    images = {}
    for run in ("toy", "zf"):
        with h5py.File(tmp_path / run / name, "r") as f:
            images[run] = f["reconstruction"][()]
    np.testing.assert_array_equal(images["toy"], 2 * images["zf"])
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "no"), "--toy-gain", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--toy-gain: applies to toy, not to zero-filled" in err

    out = tmp_path / "bench"
    assert main(["benchmark", "--data", str(sim), "--methods", "zero-filled,toy", "--toy-gain", "2", "--accelerations", "4",
                 "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["zero-filled", "toy"] and doc["settings"]["methods"]["toy"] == {"gain": 2.0}
    assert doc["config"]["reference"] == "zero-filled"


def test_non_cartesian_data_are_refused_by_cartesian_methods_from_their_spec() -> None:
    """An acquisition that carries a trajectory reaches only methods whose spec says they take
    non-Cartesian samples; every shipped (Cartesian) method refuses it in one line up front."""
    import dataclasses

    from recon.acquisition import Acquisition
    from recon.io.ismrmrd import RawScan
    from recon.pipeline import FileSlices, run_method

    acq = Acquisition(columns=np.ones(8, bool), calib=(0, 8), readout=(0, 8), acquirable=(0, 8),
                      encoded_size=(8, 8, 1), recon_size=(8, 8, 1))
    radial = dataclasses.replace(acq, trajectory=np.zeros((1, 4, 8, 2), np.float32))
    assert acq.cartesian and not radial.cartesian
    data = FileSlices.from_scan(RawScan(kspace=np.ones((1, 2, 8, 8), np.complex64), acquisition=radial), "radial.h5")
    for name in methods.available():
        assert not methods.spec(name).supports.non_cartesian
        with pytest.raises(InputError, match=f"radial.h5: {name}: the data are non-Cartesian"):
            run_method(lambda batch: None, data, torch.device("cpu"), check=name)
