"""Calibration and evaluation data: dataset specs -> streaming batches."""
