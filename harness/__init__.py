"""harness: on-device benchmarking and deployment of ML models."""

__version__ = "0.1.0"
