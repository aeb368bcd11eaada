"""Reconstruction methods behind one batched interface, one file per method.

A method takes a `ReconBatch` (masked k-space, sampled locations, calibration region from the
acquisition model, optional calibration data and coil maps) and returns magnitude images
`(B, h, w)` float32 at the RSS target's scale, center-cropped to `crop_size`. Methods are
built by name (`get_method`) from the one registry (`recon.methods.registry`), which checks
every output (finite, right shape, not empty). The CLI, the benchmark and the runner treat all
registered names alike.
"""

from recon.methods.batch import Method, ReconBatch
from recon.methods.registry import available, check_images, get_method, register

__all__ = ["Method", "ReconBatch", "available", "check_images", "get_method", "register"]
