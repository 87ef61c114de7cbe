"""hf-clipzoo: seven methods that repair CLIP's weak spots, as Hugging Face-native models."""

__version__ = "0.1.0.dev0"
