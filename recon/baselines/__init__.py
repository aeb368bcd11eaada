"""Classical baselines in torch on `recon.ops`: ESPIRiT maps, CG-SENSE, L1-wavelet and TV CS.

All solvers take batched `(B, C, H, W)` complex64 k-space on any device (CPU or GPU);
`recon.baselines.methods` wraps them behind `recon.methods`' batched interface.
"""

from recon.baselines.cs import fista_l1_wavelet, l1_wavelet_recon, pdhg_tv, tv_recon
from recon.baselines.espirit import espirit_calib
from recon.baselines.sense import cg_sense, data_scale, sense_recon

__all__ = [
    "cg_sense",
    "data_scale",
    "espirit_calib",
    "fista_l1_wavelet",
    "l1_wavelet_recon",
    "pdhg_tv",
    "sense_recon",
    "tv_recon",
]
