"""servicelink: a Kubernetes operator that keeps service-URL ConfigMaps true and rolls their consumers."""
