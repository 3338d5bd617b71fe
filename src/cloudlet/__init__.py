"""cloudlet: your own small AI cloud behind one OpenAI-compatible API."""

__version__ = "0.1.0"
