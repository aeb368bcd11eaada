"""The ISMRMRD XML header (fastMRI files and raw ISMRMRD files): one safe parser, and a builder.

Parsing goes through defusedxml, so entity declarations (the "billion laughs" bomb), external
entities and DTDs are refused instead of expanded; any such refusal or malformed XML becomes
one `InputError` line. The padding follows fastMRI's `SliceDataset._retrieve_metadata`:
`padding_left = W // 2 - center`, `padding_right = padding_left + maximum + 1` with `W` the
encodedSpace `y` size and `center`/`maximum` from `encodingLimits/kspace_encoding_step_1`.
Columns outside `[padding_left, padding_right)` are zero padding, not acquired lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Protocol
from xml.sax.saxutils import escape

import defusedxml
import defusedxml.ElementTree as SafeET

from recon.io.errors import InputError

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


@dataclass(frozen=True)
class EncodingSpace:
    """One `<encoding>` element's encoded grid (ISMRMRD `encoding_space_ref` indexes them).

    encoded_size: encodedSpace matrix (x, y, z). fov_mm: encodedSpace field of view (x, y, z)
    in mm, None when absent. step1_center, step1_maximum: `kspace_encoding_step_1` limits.
    """

    encoded_size: tuple[int, int, int]
    fov_mm: tuple[float, float, float] | None
    step1_center: int | None = None
    step1_maximum: int | None = None


@dataclass(frozen=True)
class HeaderInfo:
    """What the readers need from an ISMRMRD header (fastMRI files and raw ISMRMRD alike).

    encoded_size: encodedSpace matrix (x = readout rows incl. oversampling, y = columns W, z).
    recon_size: reconSpace matrix (x, y, z); (x, y) is the crop size of the target image.
    padding_left, padding_right: acquirable columns are `[padding_left, padding_right)`
        (fastMRI's rule; `[0, W)` when the header has no encoding limits).
    fov_mm: encodedSpace field of view in millimetres (x, y, z), None when absent.
    recon_fov_mm: reconSpace field of view (x, y, z), None when absent.
    trajectory: `encoding/trajectory`, lower case.
    step1_center, step1_maximum: `encodingLimits/kspace_encoding_step_1` center and maximum.
    identity: patient identity fields, kept apart so outputs leave them out unless asked.
    meta: other non-identifying fields (protocol, vendor, field strength, TR, TE).
    noise_bandwidth: `acquisitionSystemInformation/relativeReceiverNoiseBandwidth`, if given.
    num_encodings: number of `<encoding>` elements (the first is the imaging one; each one's
        grid: `parse_encodings`).
    """

    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int
    fov_mm: tuple[float, float, float] | None
    recon_fov_mm: tuple[float, float, float] | None = None
    trajectory: str = "cartesian"
    step1_center: int | None = None
    step1_maximum: int | None = None
    identity: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    noise_bandwidth: float | None = None
    num_encodings: int = 1


class Element(Protocol):
    """The part of an ElementTree element the header readers use (parsing is defusedxml's)."""

    text: str | None

    def find(self, path: str) -> Element | None: ...

    def findall(self, path: str) -> list[Element]: ...


def _find(root: Element, path: list[str]) -> Element | None:
    """Element at `path` below root, tags matched in any (or no) namespace."""
    return root.find("/".join(f"{{*}}{tag}" for tag in path))


def _optional(root: Element, path: list[str]) -> str | None:
    """Stripped text at `path`, or None when missing or empty."""
    node = _find(root, path)
    if node is None or node.text is None or not node.text.strip():
        return None
    return node.text.strip()


def _text(root: Element, path: list[str], source: str) -> str:
    """Stripped text at `path`; InputError naming the missing field."""
    text = _optional(root, path)
    if text is None:
        raise InputError(source, f"ISMRMRD header lacks {'/'.join(path)}")
    return text


def _int(root: Element, path: list[str], source: str) -> int:
    """Integer field at `path` (InputError if missing or not an integer)."""
    text = _text(root, path, source)
    try:
        return int(text)
    except ValueError:
        raise InputError(source, f"ISMRMRD header field {'/'.join(path)} is not an integer: {text[:40]!r}") from None


def _optional_int(root: Element, path: list[str], source: str) -> int | None:
    """Integer field at `path`, None when missing (InputError when present but not an integer)."""
    return None if _optional(root, path) is None else _int(root, path, source)


#: ISMRMRD stores matrix sizes and encoding limits as xs:unsignedShort.
USHORT_MAX = 65535


def _ushort(value: int | None, path: list[str], source: str) -> int | None:
    """`value` unless it lies outside ISMRMRD's unsignedShort range (InputError naming the field)."""
    if value is not None and not 0 <= value <= USHORT_MAX:
        raise InputError(source, f"ISMRMRD header field {'/'.join(path)} is {value}; expected 0 to {USHORT_MAX}")
    return value


def _triple(root: Element, path: list[str], source: str) -> tuple[int, int, int]:
    """(x, y, z) unsignedShort integers below `path`; a missing z counts as 1."""
    x, y = (_ushort(_int(root, path + [axis], source), path + [axis], source) for axis in "xy")
    z = _ushort(_optional_int(root, path + ["z"], source), path + ["z"], source)
    return int(x), int(y), 1 if z is None else z


def _fov(root: Element, space: str, source: str, prefix: tuple[str, ...] = ("encoding",)) -> tuple[float, float, float] | None:
    """`<prefix>/<space>/fieldOfView_mm` (x, y, z) in mm, or None when any of them is missing.

    A value that is there but not a finite number > 0 is an InputError naming the field: it
    would become a pixel spacing or slice thickness of 0, a negative (mirrored) one, or NaN.
    """
    values: list[float] = []
    for axis in "xyz":
        where = [*prefix, space, "fieldOfView_mm", axis]
        text = _optional(root, where)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            raise InputError(source, f"ISMRMRD header field {'/'.join(where)} is not a number: {text[:40]!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise InputError(source, f"ISMRMRD header field {'/'.join(where)} is {text[:40]}; a field of view must be a finite number > 0 mm")
        values.append(value)
    return values[0], values[1], values[2]


_IDENTITY = {
    "patient_name": ["subjectInformation", "patientName"],
    "patient_id": ["subjectInformation", "patientID"],
    "patient_birth_date": ["subjectInformation", "patientBirthdate"],
    "patient_sex": ["subjectInformation", "patientGender"],
}
_META = {
    "protocol_name": ["measurementInformation", "protocolName"],
    "system_vendor": ["acquisitionSystemInformation", "systemVendor"],
    "system_model": ["acquisitionSystemInformation", "systemModel"],
    "field_strength_T": ["acquisitionSystemInformation", "systemFieldStrength_T"],
    "TR_ms": ["sequenceParameters", "TR"],
    "TE_ms": ["sequenceParameters", "TE"],
}


def _root(xml: bytes | str, path: str) -> Element:
    """The parsed XML root (defusedxml; InputError for unsafe or malformed XML)."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    try:
        return SafeET.fromstring(bytes(xml), forbid_dtd=True)
    except defusedxml.DefusedXmlException as err:
        raise InputError(path, f"unsafe ISMRMRD header refused ({type(err).__name__}: entities/DTD not allowed)") from err
    except SafeET.ParseError as err:
        raise InputError(path, f"ISMRMRD header is not well-formed XML ({err})") from err


def parse_encodings(xml: bytes | str, path: str = "<header>") -> tuple[EncodingSpace, ...]:
    """Every `<encoding>`'s encoded grid in file order; an acquisition's `encoding_space_ref`
    indexes this tuple (a separate reference scan is usually the second encoding)."""
    limits = ["encodingLimits", "kspace_encoding_step_1"]
    return tuple(
        EncodingSpace(
            encoded_size=_triple(enc, ["encodedSpace", "matrixSize"], path),
            fov_mm=_fov(enc, "encodedSpace", path, ()),
            step1_center=_optional_int(enc, limits + ["center"], path),
            step1_maximum=_optional_int(enc, limits + ["maximum"], path),
        )
        for enc in _root(xml, path).findall("{*}encoding")
    )


def parse_header(xml: bytes | str, path: str = "<header>", *, require_limits: bool = True) -> HeaderInfo:
    """Parse an ISMRMRD header safely into a `HeaderInfo` (the one parser of the project).

    Args:
        xml: the header text (bytes as stored in fastMRI's `ismrmrd_header` dataset or in an
            ISMRMRD file's `xml` dataset, or str).
        path: the file it came from, for error messages.
        require_limits: fastMRI files must carry `encodingLimits/kspace_encoding_step_1`
            (their padding comes from it); raw ISMRMRD files may omit it.

    Raises:
        InputError: malformed XML, forbidden entities/DTDs, a needed field missing, a matrix size
            that is not an integer, or a field of view that is not a finite number > 0.
    """
    root = _root(xml, path)
    encodings = root.findall("{*}encoding")
    if not encodings:
        raise InputError(path, "ISMRMRD header has no <encoding>")
    encoded = _triple(root, ["encoding", "encodedSpace", "matrixSize"], path)
    recon = _triple(root, ["encoding", "reconSpace", "matrixSize"], path)
    limits = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    read = _int if require_limits else _optional_int
    center = _ushort(read(root, limits + ["center"], path), limits + ["center"], path)
    maximum = _ushort(read(root, limits + ["maximum"], path), limits + ["maximum"], path)
    if center is not None and maximum is not None and center > maximum:
        raise InputError(path, f"ISMRMRD header encodingLimits kspace_encoding_step_1 has centre {center} beyond its maximum {maximum}")
    if center is None or maximum is None:
        padding_left, padding_right = 0, encoded[1]
    else:
        padding_left = encoded[1] // 2 - center
        padding_right = padding_left + maximum + 1
    bandwidth = _optional(root, ["acquisitionSystemInformation", "relativeReceiverNoiseBandwidth"])
    try:
        noise_bandwidth = None if bandwidth is None else float(bandwidth)
    except ValueError:
        raise InputError(path, f"relativeReceiverNoiseBandwidth is not a number: {bandwidth[:40]!r}") from None
    if noise_bandwidth is not None and not 0 < noise_bandwidth <= 2:
        raise InputError(path, f"relativeReceiverNoiseBandwidth {noise_bandwidth:g} is outside (0, 2]; the noise scale cannot be trusted")
    identity = {key: v for key, where in _IDENTITY.items() if (v := _optional(root, where)) is not None}
    meta = {key: v for key, where in _META.items() if (v := _optional(root, where)) is not None}
    return HeaderInfo(
        encoded_size=encoded,
        recon_size=recon,
        padding_left=padding_left,
        padding_right=padding_right,
        fov_mm=_fov(root, "encodedSpace", path),
        recon_fov_mm=_fov(root, "reconSpace", path),
        trajectory=(_optional(root, ["encoding", "trajectory"]) or "cartesian").lower(),
        step1_center=center,
        step1_maximum=maximum,
        identity=identity,
        meta=meta,
        noise_bandwidth=noise_bandwidth,
        num_encodings=len(encodings),
    )


def _space(size: tuple[int, int, int], fov: tuple[float, float, float]) -> str:
    """matrixSize + fieldOfView_mm elements of an encodedSpace / reconSpace."""
    return (
        f"<matrixSize><x>{size[0]}</x><y>{size[1]}</y><z>{size[2]}</z></matrixSize>"
        f"<fieldOfView_mm><x>{fov[0]:g}</x><y>{fov[1]:g}</y><z>{fov[2]:g}</z></fieldOfView_mm>"
    )


def _limit(name: str, minimum: int, maximum: int, center: int) -> str:
    return f"<{name}><minimum>{minimum}</minimum><maximum>{maximum}</maximum><center>{center}</center></{name}>"


def _extra_elements(extra: Mapping[str, object]) -> str:
    """Top-level elements from {"section/field": value}; fields of one section are grouped."""
    sections: dict[str, list[str]] = {}
    for key, value in extra.items():
        section, _, field = key.partition("/")
        if not field:
            raise ValueError(f"extra header key {key!r} must be 'section/field'")
        sections.setdefault(section, []).append(f"<{field}>{escape(str(value))}</{field}>")
    return "".join(f"<{s}>{''.join(fields)}</{s}>" for s, fields in sections.items())


def build_header(
    encoded_size: tuple[int, int, int],
    recon_size: tuple[int, int, int],
    enc_limits_center: int,
    enc_limits_max: int,
    fov_mm: tuple[float, float, float] = (280.0, 160.0, 4.5),
    recon_fov_mm: tuple[float, float, float] = (140.0, 140.0, 4.5),
    extra: dict[str, object] | None = None,
) -> str:
    """A minimal valid ISMRMRD XML header laid out like fastMRI's knee files.

    Args:
        encoded_size: encodedSpace matrix (rows incl. oversampling, columns W, 1).
        recon_size: reconSpace matrix (crop rows, crop cols, 1).
        enc_limits_center, enc_limits_max: `kspace_encoding_step_1` center and maximum; the
            acquired columns are then `[W//2 - center, W//2 - center + maximum + 1)`.
        fov_mm, recon_fov_mm: fields of view in millimetres.
        extra: additional top-level elements as {"section/field": value}, e.g.
            {"measurementInformation/protocolName": "CORPD_FBK"}; placed after the encoding.

    Returns:
        The XML text (UTF-8 declaration, namespace http://www.ismrm.org/ISMRMRD).
    """
    limits = (
        _limit("kspace_encoding_step_1", 0, enc_limits_max, enc_limits_center)
        + _limit("kspace_encoding_step_2", 0, 0, 0)
        + _limit("average", 0, 0, 0)
        + _limit("slice", 0, 0, 0)
        + _limit("contrast", 0, 0, 0)
        + _limit("phase", 0, 0, 0)
        + _limit("repetition", 0, 0, 0)
        + _limit("set", 0, 0, 0)
        + _limit("segment", 0, 0, 0)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{ISMRMRD_NS}">'
        "<experimentalConditions><H1resonanceFrequency_Hz>63646310</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding>"
        f"<encodedSpace>{_space(encoded_size, fov_mm)}</encodedSpace>"
        f"<reconSpace>{_space(recon_size, recon_fov_mm)}</reconSpace>"
        f"<encodingLimits>{limits}</encodingLimits>"
        "<trajectory>cartesian</trajectory>"
        "</encoding>"
        f"{_extra_elements(extra or {})}"
        "</ismrmrdHeader>"
    )
