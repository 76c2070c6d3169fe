"""visrep: transferable visual representations for classification and generation."""
__version__ = "0.1.0"
