"""siesta-server: the llama.cpp model server that runs in every Siesta model pod."""

__version__ = "0.1.0"
