"""marserve's serving runtime: TorchServe-compatible handlers, the model loader and the server."""
