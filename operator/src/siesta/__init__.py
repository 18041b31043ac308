"""Siesta: scale-to-zero serving of llama.cpp models on Kubernetes GPUs."""

__version__ = "0.1.0"
