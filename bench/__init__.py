"""The servicelink benchmark: propagation latency, scale, writes and memory (``python -m bench``)."""
