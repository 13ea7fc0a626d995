"""Names of the extra columns that travel in `sv.Detections.data` between stages (one spelling, one home)."""

CLASS_NAME = "class_name"
"""The detector's label for each box (str), the vocabulary rules and configs speak."""

KEYPOINTS = "keypoints"
"""Pose keypoints per box, (n, 17, 3) pixel x, y and confidence; NaN rows for boxes of models without pose."""

MODEL = "model"
"""The config name of the model that produced each box (fire and weapon rules vote per model)."""
