"""Coil calibration from the acquisition model's calibration region: coil sensitivity maps now
(`calib.espirit`), GRAPPA / SPIRiT kernels, SVD coil compression (`calib.compression`) and g-factor
maps (`calib.gfactor`) beside it, one module per technique.

Every estimator reads `(B, C, H, W)` calibration k-space and the `(B, 2)` calibration column
region `[start, stop)` of `recon.acquisition.Acquisition.calib`, never a width to re-derive it.
"""

from recon.calib.espirit import espirit_calib, fitted_kernel_width

__all__ = ["espirit_calib", "fitted_kernel_width"]
