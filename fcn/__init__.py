"""Fully Convolutional Networks for semantic segmentation."""
