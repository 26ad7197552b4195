"""TorchServe-compatible handlers: `BaseHandler` and the built-in handlers archives name.

Module names equal TorchServe's (`base_handler`, `image_classifier` ...) so that the `ts.*`
compatibility layer can alias them by name.
"""
