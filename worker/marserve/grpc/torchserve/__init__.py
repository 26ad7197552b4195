"""TorchServe's gRPC APIs: the .proto files, the stubs protoc writes from them (`make grpc`),
and the services that implement them."""
