"""TorchServe-compatible handlers: `BaseHandler` and the built-in handlers archives name.

Module names equal TorchServe's (`base_handler`, `vision_handler`, `image_classifier`,
`image_segmenter`, `object_detector`) so that the `ts.*` compatibility layer can alias them by
name. TorchServe's `text_classifier` is not provided: its vocabulary file and tokenizer are
torchtext objects (see `builtin.UNSUPPORTED_BUILTIN_HANDLERS`).
"""
