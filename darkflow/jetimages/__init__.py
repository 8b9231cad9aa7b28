"""Jet images (and event images) for image-based anomaly detection: ``darkflow jetimages``."""

from darkflow.jetimages.make import JetImagesConfig, JetImagesResult, make_jet_images
from darkflow.jetimages.preprocess import event_image, jet_image, standard_frame

__all__ = ["JetImagesConfig", "JetImagesResult", "event_image", "jet_image", "make_jet_images", "standard_frame"]
