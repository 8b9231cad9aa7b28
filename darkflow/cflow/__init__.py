"""CFLOW-AD: conditional normalizing-flow anomaly detection and localization on images, jet images and
event arrays (Gudovskiy et al., WACV 2022)."""

from darkflow.cflow.imageset import ImageSet
from darkflow.cflow.load import load_images

__all__ = ["ImageSet", "load_images"]
