"""The Open Inference Protocol's `GRPCInferenceService` (KServe v2 / Triton's gRPC API)."""
