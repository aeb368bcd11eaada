"""ISMRMRD XML header of a simulated volume (the fields fastMRI reads, plus the schema's required ones).

Geometry follows fastMRI knee: the reconSpace is a 140 mm square field of view, readout is
2x oversampled (encoded FOV 280 mm along x), 3 mm coronal slices, 1.5 T (fastMRI knee was
acquired at 1.5 T and 3 T).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
RECON_FOV_MM = 140.0
SLICE_MM = 3.0


def _space(x: int, y: int, z: int, fx: float, fy: float, fz: float) -> str:
    return (
        f"<matrixSize><x>{x}</x><y>{y}</y><z>{z}</z></matrixSize>"
        f"<fieldOfView_mm><x>{fx:.4f}</x><y>{fy:.4f}</y><z>{fz:.4f}</z></fieldOfView_mm>"
    )


def _limit(minimum: int, maximum: int, center: int) -> str:
    return f"<minimum>{minimum}</minimum><maximum>{maximum}</maximum><center>{center}</center>"


def simulated_header(
    rows: int, width: int, recon_size: tuple[int, int], center: int, maximum: int, slices: int
) -> str:
    """ISMRMRD header text for k-space (slices, C, rows, width) with `maximum + 1` acquired columns
    centred at `center` (so fastMRI's padding_left = width // 2 - center)."""
    h, w = recon_size
    px = RECON_FOV_MM / h
    encoded = _space(rows, width, 1, rows * px, width * px, SLICE_MM)
    recon = _space(h, w, 1, h * px, w * px, SLICE_MM)
    limits = (
        f"<kspace_encoding_step_1>{_limit(0, maximum, center)}</kspace_encoding_step_1>"
        f"<kspace_encoding_step_2>{_limit(0, 0, 0)}</kspace_encoding_step_2>"
        f"<average>{_limit(0, 0, 0)}</average>"
        f"<slice>{_limit(0, max(slices - 1, 0), slices // 2)}</slice>"
        f"<contrast>{_limit(0, 0, 0)}</contrast>"
        f"<phase>{_limit(0, 0, 0)}</phase>"
        f"<repetition>{_limit(0, 0, 0)}</repetition>"
        f"<set>{_limit(0, 0, 0)}</set>"
        f"<segment>{_limit(0, 0, 0)}</segment>"
    )
    system = escape("recon.simulate (simulated; not a scanner)")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{ISMRMRD_NS}">'
        "<acquisitionSystemInformation>"
        f"<systemVendor>{system}</systemVendor><systemFieldStrength_T>1.5</systemFieldStrength_T>"
        "</acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>63646310</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding>"
        f"<encodedSpace>{encoded}</encodedSpace>"
        f"<reconSpace>{recon}</reconSpace>"
        f"<encodingLimits>{limits}</encodingLimits>"
        "<trajectory>cartesian</trajectory>"
        "</encoding>"
        "</ismrmrdHeader>"
    )
