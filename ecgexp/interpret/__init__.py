"""Attribution maps (Grad-CAM, saliency, guided backprop, integrated gradients) for ECG models."""
