"""Learned reconstruction models: E2E-VarNet (fastMRI state-dict compatible) and its U-Nets."""

from recon.models.unet import NormUnet, Unet
from recon.models.varnet import SensitivityModel, VarNet, VarNetBlock, detect_num_low_frequencies

__all__ = ["NormUnet", "SensitivityModel", "Unet", "VarNet", "VarNetBlock", "detect_num_low_frequencies"]
