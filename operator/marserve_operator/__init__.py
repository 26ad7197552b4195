"""marserve's Kubernetes operator for InferenceModel resources."""
