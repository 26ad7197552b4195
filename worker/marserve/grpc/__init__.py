"""gRPC front ends: the machinery every gRPC port shares (`listener`, `status`) and one
subpackage per protocol (`torchserve`: TorchServe's inference and management APIs)."""
