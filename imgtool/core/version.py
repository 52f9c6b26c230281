"""The version, alone, so that any module can name it without importing the package's API.

Layer: foundations (imports nothing)."""

__version__ = "0.1.0"


def made_with() -> dict[str, str]:
    """The versions that decide a score besides the model: Pillow (decoding and resizing:
    12 and 13 upscale differently) and the LiteRT runtime. Recorded in a retrained model's
    imgtool-model.json and shown by `imgtool classify -v`."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist, key in (("pillow", "pillow"), ("ai-edge-litert", "litert")):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = "not installed"
    return out
