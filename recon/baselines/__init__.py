"""Classical baselines in torch on `recon.ops`: ESPIRiT maps, CG-SENSE, L1-wavelet and TV CS.

All solvers take batched `(B, C, H, W)` complex64 k-space on any device (CPU or GPU).
"""
