"""superres: x4 super-resolution and deblurring with CNN, ResCNN (SRResNet-style) and SRGAN models."""

__version__ = "0.1.0"
