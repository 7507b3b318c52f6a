"""srgan: photo super-resolution with SRGAN/ESRGAN generators.

Python API (no CLI needed)::

    from srgan_cli import load_model, upscale_image
    model = load_model("srgan_x4", device="cpu")
    big = upscale_image(PIL.Image.open("photo.png"), model)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Model", "SrganError", "SrganWarning", "load_model", "upscale_array", "upscale_image"]

from .errors import SrganError, SrganWarning


def __getattr__(name: str):
    # Lazy: `import srgan_cli` stays cheap (no torch) until the API is used.
    if name in ("Model", "load_model", "upscale_array", "upscale_image"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'srgan_cli' has no attribute {name!r}")
