"""Layer 3: metrics with intervals and thresholds, out-of-distribution distances, Grad-CAM and its checks, label-free adaptation, figures."""
