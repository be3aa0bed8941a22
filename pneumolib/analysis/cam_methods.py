"""The CAM methods by name: pytorch-grad-cam's classes, registered by import path and imported when one is used."""

from __future__ import annotations

from ..core.registry import Registry

# hirescam (gradient x activation per cell) is the default: chosen by `explain --compare` on real-data runs (README
# 'Lungs'), the one method whose maps passed their checks on both the baseline and the recipe; gradcam averages the
# gradients per channel and left 58% of the baseline's layer3 maps empty
METHODS = Registry("CAM method")  # `explain --method` offers these names
METHODS.add("gradcam", "pytorch_grad_cam:GradCAM")
METHODS.add("gradcam++", "pytorch_grad_cam:GradCAMPlusPlus")
METHODS.add("eigencam", "pytorch_grad_cam:EigenCAM")
METHODS.add("hirescam", "pytorch_grad_cam:HiResCAM")
METHODS.add("layercam", "pytorch_grad_cam:LayerCAM")
DEFAULT_METHOD = "hirescam"
