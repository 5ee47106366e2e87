"""AIGC Studio: train, fine-tune, evaluate and sample generative models on your own data."""

__version__ = "0.1.0"
