"""Side-by-side benchmarks: marserve against TorchServe and against the raw forward pass.

Run with `make bench`; `python -m marbench --help` lists the knobs. Both servers get the same
archives, model YAML, request bodies and load generator, one after the other on 127.0.0.1.
"""
