"""Reconstruct one file with any registered method: the per-file job behind `recon reconstruct`.

A fastMRI file with its own `mask` (test / challenge data) is reconstructed from its own
undersampled k-space; a fully sampled file is undersampled retrospectively with the
file-name-seeded mask when an acceleration is given (as fastMRI validation does), and
reconstructed as acquired otherwise. Raw files (ISMRMRD, Siemens TWIX) keep their true sampling.

A fastMRI file is read a slice batch at a time (`recon.pipeline.run_method`), so memory follows
the batch and the output images, not the volume; a raw file (ISMRMRD, TWIX) is gridded whole,
then reconstructed in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon import method_checks
from recon.acquisition import Acquisition
from recon.io.errors import InputError
from recon.io.scan import image_choices, sniff
from recon.io.writers import name_suffix, output_path, write_image
from recon.pipeline import FileSlices, build_method, domain_warnings, open_file, resolve_device, run_method
from recon.arguments import not_inputs


def output_problem(path: Path, fmt: str) -> str | None:
    """Why an existing output at `path` is not a complete `fmt` image (what `--skip-existing`
    must not count as done), or None when it reads back whole and finite."""
    try:
        if fmt == "dcm":
            if not path.is_dir():
                return "is not a DICOM folder"
            import pydicom

            files = sorted(path.glob("*.dcm"))
            if not files:
                return "holds no DICOM files"
            for f in files:
                pydicom.dcmread(f).pixel_array
            return None
        if not path.is_file():
            return "is not a file"
        if fmt == "h5":
            from recon.io.fastmri import read_reconstruction

            images, _ = read_reconstruction(path)
        elif fmt == "nii":
            import nibabel

            images = np.asarray(nibabel.load(path).dataobj)
        elif fmt == "png":
            from PIL import Image

            with Image.open(path) as img:
                img.load()
            return None
        else:
            return f"has an unknown format {fmt!r}"
    except Exception as err:  # noqa: BLE001 - any failure to read back means "not complete"
        return f"cannot be read back ({type(err).__name__})"
    if images.size == 0 or not np.isfinite(images).all():
        return "is empty or not finite"
    return None


@dataclass
class ReconstructJob:
    """Picklable per-file job: `job(path) -> dict` (run in-process or on a Dask worker)."""

    out_dir: Path
    method: str = "zero-filled"
    method_options: dict[str, Any] = field(default_factory=dict)
    acceleration: float | None = None
    center_fraction: float | None = None
    mask_type: str = "random"
    fmt: str = "h5"
    device: str = "auto"
    backend: str | None = None
    batch_size: int = 8
    skip_existing: bool = False
    keep_identity: bool = False
    max_memory: int | None = None
    repetition: int | None = None
    contrast: int | None = None
    set_index: int | None = None
    progress: bool = False
    gfactor: bool = False
    max_slices: int | None = None

    def _choice(self) -> dict[str, int | None]:
        return {"repetition": self.repetition, "contrast": self.contrast, "set": self.set_index}

    def target(self, path: Path, choice: dict[str, int | None] | None = None) -> Path:
        """The output path of input `path` for one ISMRMRD (repetition, contrast, set) choice.

        A counter chosen on the command line, or one of several in the file, adds `_rep<N>`,
        `_contrast<N>` or `_set<N>` to the name, so no two images of one file share an output.
        """
        return output_path(self.out_dir, path, self.fmt, self._choice() if choice is None else choice)

    def gfactor_target(self, path: Path, choice: dict[str, int | None] | None = None) -> Path:
        """Where the g-factor maps of `path` go (`--gfactor`): `out/<stem>[_rep<N>...]_gfactor.h5`."""
        return output_path(self.out_dir, path, "h5", self._choice() if choice is None else choice, quantity="gfactor")

    def outputs(self, path: Path) -> list[Path]:
        """Every output `path` will write (each image variant, and its g-factor maps with
        `gfactor`): the names the duplicate-output check compares across all inputs."""
        try:
            choices = self.variants(path)
        except (InputError, OSError, ValueError, KeyError, TypeError):
            choices = [self._choice()]
        made = [self.target(path, c) for c in choices]
        if self.gfactor:
            made += [self.gfactor_target(path, c) for c in choices]
        return made

    def variants(self, path: Path) -> list[dict[str, int | None]]:
        """The images one input holds (`recon.io.scan.image_choices`: for ISMRMRD one per
        repetition, contrast and set present, so none is dropped), narrowed to the chosen ones."""
        if sniff(path) == "fastmri":
            return [{}]
        chosen = {k: v for k, v in self._choice().items() if v is not None}
        picked = [{**c, **chosen} for c in image_choices(path)]
        order = list(self._choice())
        unique = dict.fromkeys(tuple((k, c[k]) for k in order if k in c) for c in picked)
        return [dict(c) for c in unique]

    def __call__(self, path: Path) -> dict[str, Any]:
        path = Path(path)
        done: list[dict[str, Any]] = []
        warnings: list[str] = []
        for choice in self.variants(path):
            target = self.target(path, choice)
            not_inputs([target], [path])
            if self.skip_existing and target.exists():
                wanted = [target] + ([self.gfactor_target(path, choice)] if self.gfactor else [])
                problems = [f"{p.name} {why}" for p in wanted if (why := output_problem(p, self.fmt if p == target else "h5"))]
                if not problems:
                    done.append({"skipped": True, "output": str(target)})
                    continue
                warnings.append(f"--skip-existing: {'; '.join(problems)}; reconstructed again")
            done.append(self._one(path, target, choice, warnings))
        done = [d if d.get("skipped") else d["write"]() for d in done]  # written only once every image of the file is good
        made = [d for d in done if not d.get("skipped")]
        if not made:
            return {"skipped": True, "reason": "output exists", "output": done[0]["output"]}
        out = dict(made[0])
        if len(done) > 1:
            out["outputs"] = [d["output"] for d in done]
        if warnings:
            out["warnings"] = list(dict.fromkeys(warnings))
        return out

    def _one(self, path: Path, target: Path, choice: dict[str, int | None], warnings: list[str]) -> dict[str, Any]:
        """Open, reconstruct batch by batch (each batch checked before the method runs) and
        check one image of `path` (one ISMRMRD choice); `{"write": f}`, where `f()` writes it
        and returns its record (the caller writes a file's images once all of them are good)."""
        for out in [target] + ([self.gfactor_target(path, choice)] if self.gfactor else []):
            if out.exists() and out.is_dir() != (out == target and self.fmt == "dcm"):
                kind = "a folder" if out.is_dir() else "a file"
                raise InputError(path, f"its output {out} exists as {kind}; remove it or choose another --out")
        data, acquisition, identity = self._load(path, warnings, choice)
        with data:
            if self.fmt == "nii" and data.acquisition.geometry is not None:
                from recon.geometry import stack_problem

                problem = stack_problem(list(data.acquisition.geometry))
                if problem is not None:
                    raise InputError(path, f"{problem}; a NIfTI volume needs one constant slice step: use --format dcm (one file per slice)")
            device = resolve_device(self.device)
            method = build_method(self.method, {"device": str(device), **self.method_options})
            warnings += domain_warnings(method, data)
            bar = None
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(total=len(data), desc=path.name, unit="slice", leave=False)
            try:
                images = run_method(method, data, device, self.batch_size, self.backend,
                                    None if bar is None else bar.update, check=self.method)
            finally:
                if bar is not None:
                    bar.close()
            gfactor = self._gfactor_maps(path, method, data, device) if self.gfactor else None
        images = method_checks.check_images(path, images, self.method, len(data))
        attrs = {"method": self.method, "acquisition": acquisition}
        acq = data.acquisition

        def write() -> dict[str, Any]:
            series = self.method + name_suffix(choice).replace("_", " ")
            outputs = write_image(target, images, self.fmt, acq, attrs, choice=choice, identity=identity,
                                  keep_identity=self.keep_identity, series=series)
            if gfactor is not None:
                outputs += self._write_gfactor(path, gfactor, acq, attrs, choice)
            record = {**acq.provenance.attrs(), **attrs, **{k: int(v) for k, v in choice.items() if v is not None}}
            return {"output": str(outputs[0]), "slices": int(images.shape[0]), **{k: v for k, v in record.items() if v is not None}}

        return {"write": write}

    def _gfactor_maps(self, path: Path, method: Any, data: FileSlices, device: Any) -> np.ndarray:
        """The g-factor maps `(S, h, w)` of the built `method` on `data` (`recon.methods.gfactor`:
        the methods whose spec names one, on uniform masks), batch by batch like the image."""
        from recon.methods.gfactor import GFactorMaps, check_gfactor

        try:
            check_gfactor(self.method)
            return run_method(GFactorMaps(method), data, device, self.batch_size, self.backend)
        except ValueError as err:
            raise InputError(path, str(err)) from None

    def _write_gfactor(self, path: Path, maps: np.ndarray, acq: Acquisition, attrs: dict[str, Any], choice: dict[str, int | None]) -> list[Path]:
        """Write g-factor maps beside the image as `<name>_gfactor.h5` (dataset `reconstruction`),
        with the image's attrs and which g-factor they are."""
        from recon.methods import spec

        target = self.gfactor_target(path, choice)
        not_inputs([target], [path])
        return write_image(target, maps, "h5", acq, {**attrs, "quantity": "gfactor", "gfactor": spec(self.method).supports.gfactor}, choice=choice)

    def _ignored_options(self, what: str) -> list[str]:
        given = [name for name, value in (("--acceleration", self.acceleration), ("--center-fraction", self.center_fraction)) if value is not None]
        return [f"{', '.join(given)} ignored: {what} keeps its own sampling"] if given else []

    def _load(
        self, path: Path, warnings: list[str] | None = None, choice: dict[str, int | None] | None = None
    ) -> tuple[FileSlices, str | None, dict[str, Any]]:
        """The file opened for reconstruction (`open_file`, any format; fastMRI: nothing read yet;
        memory checked), its acquisition name and identity; `warnings` collects what the reader
        assumed and options that do not apply; `choice` picks a raw file's repetition / contrast /
        set (default: the job's)."""
        warnings = [] if warnings is None else warnings
        choice = self._choice() if choice is None else choice
        data = open_file(path, self.acceleration, self.center_fraction, self.mask_type, self.max_slices,
                         choice=choice, max_memory=self.max_memory)
        try:
            data.check_memory(self.batch_size, self.max_memory)
        except BaseException:
            data.close()
            raise
        scan = data.scan
        warnings += scan.warnings
        if scan.has_own_sampling:
            kinds = {"fastmri": "a file with its own mask (prospective / challenge data)",
                     "ismrmrd": "prospectively undersampled ISMRMRD data", "twix": "prospectively undersampled Siemens TWIX data"}
            warnings += self._ignored_options(kinds.get(scan.format, "prospectively undersampled raw data"))
        if scan.format == "fastmri":
            given = [flag for flag, value in (("--repetition", self.repetition), ("--contrast", self.contrast),
                                              ("--set", self.set_index)) if value is not None]
            if given:
                warnings.append(f"{', '.join(given)} ignored: a fastMRI file holds one image (the option selects within ISMRMRD files)")
        return data, scan.attrs.get("acquisition"), dict(scan.identity)
