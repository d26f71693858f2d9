"""TF-Serving-compatible serving: launcher, built-in gRPC/REST server and client (installed as ``tfrs_lab.serving``)."""
