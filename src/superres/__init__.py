"""superres: x4 super-resolution and deblurring with CNN, ResCNN (SRResNet-style) and SRGAN models.

    import superres
    model = superres.load_model("rescnn")            # once: a shipped name, a weights file, or another project's
    bigger = superres.upscale(photo, model=model)    # a PIL image, NumPy array or torch tensor; the same type back

The functions live in `superres.api`, imported on first use, so `import superres` stays light.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "load_model", "restore", "upscale"]
_API = ("load_model", "restore", "upscale")


def __getattr__(name: str):
    if name in _API:
        from superres import api

        return getattr(api, name)
    raise AttributeError(f"module 'superres' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
