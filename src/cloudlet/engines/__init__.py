"""Engines run models. ``base`` defines the protocol; ``llamacpp*`` embed llama.cpp."""
