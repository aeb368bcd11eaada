"""Challenge-style comparison of methods x accelerations on fastMRI-format files.

For every volume and acceleration the mask is seeded from the file name (identical across
methods), every method reconstructs the same undersampled k-space, and each volume is scored
with `recon.metrics` (fastMRI's SSIM / PSNR / NMSE) and timed (seconds per slice). Files are
independent tasks on `recon.runner` (in-process, or on Dask). Outputs: `results.json` (settings,
every per-volume row, grouped summaries, paired statistics), `report.md`, `report.html` and PNG
figures (`recon.report`). Summaries are per acceleration over all volumes and per group
(acquisition, coils or source: PD and PDFS apart, as fastMRI reports them); paired statistics
compare every method with a reference method volume by volume (`recon.stats`).

A volume is scored only when its numbers can mean something (`recon.evaluation`: a finite,
non-negative, nonzero target; finite scores) and only at accelerations whose mask leaves some
acquired column out; otherwise the file fails with one line naming it and the others go on.
results.json is always written (strict JSON, `recon.io.json_file`), and a failure while
drawing the reports is recorded there (`report_error`) instead of losing the results.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from skimage.metrics import structural_similarity

from recon import method_checks
from recon.methods import spec
from recon.core import center_crop
from recon.acquisition import Acquisition
from recon.evaluation import check_scores, check_target
from recon.io import InputError
from recon.metrics import psnr, volume_metrics
from recon.noise import estimate_noise_sigma, estimate_snr
from recon.masks import default_center_fraction
from recon.pipeline import (FileSlices, build_method, domain_warnings, file_acquisition, open_file,
                            resolve_device, run_method)
from recon.io.json_file import write_json
from recon.report.settings import run_settings
from recon.report.tables import GROUP_KEYS, summarize, text_paired, text_table
from recon.report.writers import write_reports
from recon.runner import expand_inputs, run_batch, summary_table
from recon.stats import paired_comparisons
from recon.arguments import keep_previous

METRICS = ("ssim", "psnr", "nmse")


def data_source(attrs: dict[str, Any]) -> str:
    """The data source of a file for grouping: its `source` attribute, 'simulated' for
    `recon.simulate` files, else 'unlabelled'."""
    if attrs.get("source"):
        return str(attrs["source"])
    return "simulated" if "simulated" in attrs else "unlabelled"



@dataclass
class BenchmarkJob:
    """Picklable per-file benchmark task: `job(path) -> {"rows": [...], "preview": {...}}`.

    `progress` shows a per-file bar over slice batches (methods x accelerations x slices) with
    an ETA; it is off on Dask workers.
    """

    methods: list[str]
    accelerations: list[float]
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    max_slices: int | None = None
    mask_type: str = "random"
    batch_size: int = 8
    backend: str | None = None
    max_memory: int | None = None
    center_fraction: float | None = None
    progress: bool = False

    def __call__(self, path: Path) -> dict[str, Any]:
        path = Path(path)
        with open_file(path, max_slices=self.max_slices, max_memory=self.max_memory) as probe:
            return self._run(path, probe)

    def _run(self, path: Path, probe: FileSlices) -> dict[str, Any]:
        """Score every method x acceleration on the fully sampled file `probe` (any format; opened
        once, each acceleration's retrospective mask applied to the same scan)."""
        scan = probe.scan
        if scan.has_own_sampling:
            raise InputError(path, "already undersampled (its own mask, or prospectively undersampled raw data); the benchmark needs fully sampled files")
        picked = probe.slices
        for acc in self.accelerations:
            check_undersampled(path, file_acquisition(scan, acc, self.center_fraction, self.mask_type), scan.acquisition, acc)
        probe.check_memory(self.batch_size, self.max_memory)
        target = probe.target()
        if target is None:
            raise InputError(path, "has no target image (reconstruction_rss / _esc) to score against")
        check_target(path, target, picked[0])
        snr = volume_snr(probe, target)
        device = resolve_device(self.device)
        mid = target.shape[0] // 2
        data_range = float(target.max())
        rows: list[dict[str, Any]] = []
        warnings: list[str] = list(scan.warnings)
        preview: dict[str, Any] = {"file": path.name, "slice": mid, "target": target[mid].tolist(), "images": {}, "scores": {}}
        attrs = dict(scan.attrs)
        bar = self._bar(path.name, len(picked))
        try:
            for acc in self.accelerations:
                data = FileSlices(scan, file_acquisition(scan, acc, self.center_fraction, self.mask_type), picked)
                for name in self.methods:
                    method = build_method(name, {"device": str(device), **self.method_options.get(name, {})})
                    warnings += domain_warnings(method, data)
                    if bar is not None:
                        bar.set_postfix_str(f"{name} {acc:g}x")
                    seconds: list[float] = []
                    images = run_method(method, data, device, self.batch_size, self.backend,
                                        None if bar is None else bar.update, check=name, seconds=seconds)
                    images = method_checks.check_images(path, images, name, len(data), label=f"{name} at {acc:g}x")
                    scores = check_scores(path, volume_metrics(target, images), f"{name} at {acc:g}x: the reconstruction",
                                          "the undersampled k-space still holds everything the target was made from")
                    rows.append(
                        {
                            "file": path.name,
                            "method": name,
                            "acceleration": float(acc),
                            "center_fraction": data.acquisition.provenance.center_fraction,
                            "acquisition": attrs.get("acquisition"),
                            "coils": int(scan.shape[0]),
                            "source": data_source(attrs),
                            "snr": snr,
                            "slices": int(images.shape[0]),
                            **scores,
                            "seconds_per_slice": sum(seconds) / images.shape[0],
                        }
                    )
                    img = center_crop(images[mid], target.shape[-2:])
                    key = f"{name}@{acc:g}"
                    preview["images"][key] = img.tolist()
                    preview["scores"][key] = {
                        "ssim": float(structural_similarity(target[mid], img, data_range=data_range)),
                        "psnr": psnr(target[mid], img, data_range),
                    }
        finally:
            if bar is not None:
                bar.close()
        return {"rows": rows, "preview": preview, "warnings": list(dict.fromkeys(warnings))}

    def _bar(self, name: str, slices: int) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        total = slices * len(self.methods) * len(self.accelerations)
        return tqdm(total=total, desc=name, unit="slice", leave=False, file=sys.stderr)


def check_undersampled(path: Path, acq: Acquisition, full: Acquisition, acc: float) -> None:
    """InputError when the retrospective mask of `acc` samples every column the file acquired.

    An acceleration just above 1 (e.g. 1.0001) draws a mask that leaves nothing out: the
    "reconstruction" is the fully sampled image, its PSNR is infinite and it says nothing about
    the method, so the file is refused before any method runs.
    """
    acquired = np.asarray(full.column_mask, dtype=bool)
    sampled = np.asarray(acq.columns, dtype=bool) & acquired
    if np.all(sampled == acquired):
        kind = acq.provenance.kind
        raise InputError(path, f"at {acc:g}x the {kind} mask samples all {int(acquired.sum())} acquired k-space columns of this file, "
                               "so nothing is undersampled and there is nothing to reconstruct; use a larger --accelerations value")


def volume_snr(data: FileSlices, target: np.ndarray) -> float | None:
    """Estimated SNR of a volume's central picked slice (`recon.noise.estimate_snr`: its target
    over the noise std of its fully sampled k-space, noise bias removed); None when the k-space holds no measurable
    noise (noiseless or edge-cropped data) or the ratio is not finite, so such a file lands in the
    "unknown" SNR bin."""
    mid = len(data) // 2
    kspace, _ = data.read(mid, mid + 1)
    try:
        snr = round(estimate_snr(target[mid], float(estimate_noise_sigma(kspace[0])), kspace.shape[1]), 2)
    except ValueError:
        return None
    return snr if math.isfinite(snr) else None


def check_methods(methods: Sequence[str], options: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Build every method once before any file runs; returns {learned method: why it is skipped}.

    A learned method without weights is skipped (with the reason); an unknown method, an option a
    method does not take or a bad option of any other method is an `InputError` up front.
    """
    skipped: dict[str, str] = {}
    for name in methods:
        try:
            spec(name).make_options(dict(options.get(name, {})))
        except ValueError as err:
            raise InputError("--methods", f"{name}: {err}") from err
        try:
            build_method(name, options.get(name, {}))
        except (ValueError, InputError, OSError) as err:
            if spec(name).learned:
                skipped[name] = f"no usable checkpoint ({err})"
                continue
            raise InputError("--methods", f"{name}: {err}") from err
    return skipped


def check_accelerations(accelerations: Sequence[float]) -> list[float]:
    """The accelerations as floats; InputError when two are the same acceleration.

    Duplicates are refused, not merged: `4,4.0` (or two values the reports would both label
    "4x") would score every volume twice and count each twice in the means and the statistics.
    """
    seen: dict[str, float] = {}
    out = []
    for value in accelerations:
        acc = float(value)
        label = f"{acc:g}"
        if label in seen:
            raise InputError("--accelerations", f"{seen[label]:g} and {value!r} are the same acceleration ({label}x); give each acceleration once")
        seen[label] = acc
        out.append(acc)
    return out


def run_benchmark(
    data: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    methods: Sequence[str],
    accelerations: Sequence[float],
    *,
    method_options: dict[str, dict[str, Any]] | None = None,
    device: str = "auto",
    max_slices: int | None = None,
    mask_type: str = "random",
    center_fraction: float | None = None,
    batch_size: int = 8,
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    note: str = "",
    max_memory: int | None = None,
    reference: str | None = None,
    by: str | None = "acquisition",
) -> dict[str, Any]:
    """Run the benchmark over files/folders `data`; write results.json, report.md, report.html and figures to `out`.

    `reference` (default: the baseline method, `MethodSpec.baseline`, when run, else the first method) is the method every
    other one is compared with, paired by volume; `by` groups the tables (acquisition, coils,
    source, or None for per-acceleration tables only). The returned doc holds what results.json
    holds (with `report_error` when the reports could not be drawn), plus `non_finite` (places of
    numbers written as null) and the text tables.
    """
    if by is not None and by not in GROUP_KEYS:
        raise InputError("--by", f"cannot group by {by!r}; choose one of {', '.join(GROUP_KEYS)}")
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise InputError("--methods", "no method given")
    accelerations = check_accelerations(accelerations)
    if reference is not None and reference not in methods:
        raise InputError("--reference", f"{reference!r} is not one of the benchmarked methods ({', '.join(methods)})")
    options = dict(method_options or {})
    skipped = check_methods(methods, options)
    for name, why in skipped.items():
        print(f"benchmark: skipping {name}: {why}", file=sys.stderr)
    methods = [m for m in methods if m not in skipped]
    if not methods:
        raise InputError("--methods", "every method was skipped")
    if reference is None:
        reference = next((m for m in methods if spec(m).baseline), methods[0])
    elif reference not in methods:
        raise InputError("--reference", f"{reference} was skipped: {skipped[reference]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, missing = expand_inputs(data)
    seen: dict[str, Path] = {}
    for f in files:
        if f.name in seen:
            raise InputError(f, f"has the same file name as {seen[f.name]}; volumes are paired and masked by file name, so names must be unique")
        seen[f.name] = f
    local = not scheduler and not (workers and workers > 0)
    job = BenchmarkJob(methods, accelerations, options, device, max_slices, mask_type, batch_size,
                       backend, max_memory, center_fraction, progress=progress and local)
    results = missing + run_batch(job, files, workers=workers, scheduler=scheduler, progress=progress, desc="benchmark")
    rows = [row for r in results if r.status == "ok" for row in r.result["rows"]]
    summary = summarize(rows, by)
    paired = paired_comparisons(rows, reference, metrics=("ssim", "psnr")) if len(methods) > 1 else []
    failed = [{"file": r.file, "reason": r.reason} for r in results if r.status == "failed"]
    warned = [{"file": r.file, "warning": w} for r in results if r.status == "ok" for w in r.result.get("warnings", [])]
    cfs = {a: (default_center_fraction(a) if center_fraction is None else float(center_fraction)) for a in job.accelerations}
    settings = run_settings(
        data=[str(d) for d in data], files=[str(f) for f in files], methods={m: options.get(m, {}) for m in methods},
        accelerations=job.accelerations, center_fractions=cfs, mask_type=mask_type, max_slices=max_slices,
        batch_size=batch_size, device=resolve_device(device), reference=reference, by=by, note=note, skipped_methods=skipped,
    )
    doc = {
        "config": {**asdict(job), "data": [str(d) for d in data], "note": note, "reference": reference, "by": by},
        "settings": settings,
        "rows": rows,
        "summary": [r for r in summary if r["group"] == "all"],
        "groups": summary,
        "paired": [p.as_dict() for p in paired],
        "failed": failed,
        "warnings": warned,
    }
    keep_previous(out / "results.json")
    non_finite = write_json(out / "results.json", doc)
    ok = [r for r in results if r.status == "ok"]
    preview = ok[0].result["preview"] if ok else None
    try:
        write_reports(out, summary, rows, paired, settings, preview, methods, job.accelerations, failed, warned)
    except Exception as err:  # noqa: BLE001 - results.json is written; a drawing failure must not hide it
        doc["report_error"] = f"report.md / report.html not written ({type(err).__name__}: {' '.join(str(err).split())}); results.json is complete"
        non_finite = write_json(out / "results.json", doc)
    doc["non_finite"] = non_finite
    doc["table"] = text_table(summary) if summary else "no volume was scored"
    doc["paired_table"] = text_paired(paired)
    doc["files_table"] = summary_table(results)
    return doc
