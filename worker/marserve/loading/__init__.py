"""Turning an extracted model directory into a runnable model: device, file format, compilation.

The handlers call into here so that every way of loading a model (eager, TorchScript, ONNX,
AOTInductor) and every device rule lives in one place that the tests can exercise directly.
"""
