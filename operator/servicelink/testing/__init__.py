"""A real local Kubernetes control plane for tests, the demo and the benchmark (does I/O)."""
