//! A local Kubernetes cluster for ebisu's tests and demo (work in progress).
