"""gpu-inference-kit health checks and smoke benchmark."""

__version__ = "0.1.0"
