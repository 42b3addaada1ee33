"""The one image decoder of cnnzoo: training, evaluation, predict, serve and data check all call it.

Decoding defends against what an upload can do to a server: bytes that are not an image (415), a
format outside the common ones (415: exotic Pillow decoders have had decompression-bomb bugs, so
`Image.open(formats=...)` never tries them), a header that declares more pixels than `max_pixels`
(413, checked before a single pixel is decoded: a 30000x30000 PNG is a few kilobytes on the wire and
2.7 GB in memory), and truncated or corrupt data (422). Nothing in an image is ever executed.

High bit depth. Pillow opens a 16-bit grey PNG or TIFF as mode I;16 (I;16B big-endian, I;16L) or I
(32-bit integers), and a float TIFF as F. `Image.convert("L")` *clips* those values to 255, so a 16-bit
digit (ink 0..65535) would come out nearly all white. We scale instead: 16-bit values v -> round(v / 257)
(65535 -> 255, and an 8-bit image saved as 16 bits, v * 257, comes back exactly); F images in [0, 1]
-> v * 255. 32-bit integer images beyond 16 bits and float images outside [0, 1] have no agreed scale
and are refused with a message saying so. 16-bit RGB(A) PNGs Pillow already reduces to 8 bits per channel.

`size`: a target side. JPEG can decode at 1/2, 1/4 or 1/8 scale (`Image.draft`), so a 6000x4000 photo
for a 224-pixel model never exists in memory at full size; the result is still at least `size` on its
short side, so the model's own resize and crop see the same picture.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CnnzooError

PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
MAX_PIXELS = 40_000_000  # 40 megapixels: a large phone photo; Pillow's own bomb limit is 89 M (warning)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


class ImageRejected(CnnzooError):
    """An input that is not a usable image; `status` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """`img` in `mode` ("L" or "RGB"), high-bit-depth images scaled to 8 bits rather than clipped."""
    if img.mode not in HIGH_DEPTH:
        return img.convert(mode)
    a = np.asarray(img)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ImageRejected(f"a floating-point image with values in [{np.nanmin(a):g}, {np.nanmax(a):g}]: "
                                f"only [0, 1] has a known scale; save it as 8 or 16 bits")
        a8 = np.round(a * 255)
    else:
        if a.min() < 0 or a.max() > 65535:
            raise ImageRejected(f"a 32-bit integer image with values up to {int(a.max())}: only 16-bit ranges "
                                f"(0..65535) have a known scale; save it as 8 or 16 bits")
        a8 = np.round(a.astype(np.float64) / 257)
    return Image.fromarray(a8.astype(np.uint8), "L").convert(mode)


def _reduced(img: Image.Image, mode: str, factor: int) -> Image.Image:
    """Box-average `factor` x `factor` blocks before the mode conversion: a 6300x6300 1-bit PNG becomes
    40 MB of grey, then a few hundred kB, and never 119 MB of RGB (what Pillow's resize does with reducing_gap)."""
    if img.mode in HIGH_DEPTH:
        img = to_mode(img, "L")
    elif img.mode not in ("L", "RGB", "RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGB" if mode == "RGB" and img.mode not in ("1", "L") else "L")
    return img.reduce(factor).convert(mode)


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageRejected("empty file: no bytes to decode", 400)
    try:
        return Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(f"not an image in an allowed format ({', '.join(PIL_FORMATS)})", 415) from None
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels: {exc}", 413) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(f"truncated or corrupt image header ({type(exc).__name__}: {exc})") from None


def header_pixels(data: bytes) -> int:
    """Pixels the header declares, without decoding any (the server's budget counts these)."""
    with _open(data) as img:
        return img.size[0] * img.size[1]


def decode_image(data: bytes, mode: str, *, max_pixels: int = MAX_PIXELS, size: int | None = None) -> Image.Image:
    """Fully decode `data` in `mode` ("RGB" or "L"), or raise ImageRejected saying why not."""
    with _open(data) as img:
        w, h = img.size
        if w * h > max_pixels:  # the header alone tells; decoding would allocate w * h * channels bytes
            raise ImageRejected(f"too many pixels: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the limit of "
                                f"{max_pixels / 1e6:.0f} MP", 413)
        if w == 0 or h == 0:
            raise ImageRejected(f"empty image ({w}x{h})")
        try:
            if size and img.format == "JPEG":
                img.draft(mode, (size, size))  # DCT scaling: decodes at 1/2..1/8, short side still >= size
            if size and min(img.size) >= 2 * size:
                return _reduced(img, mode, min(img.size) // size)
            return to_mode(img, mode)  # decodes every pixel: a truncated file fails here, not later
        except _DECODE_ERRORS as exc:
            raise ImageRejected(f"corrupt or truncated {img.format} data ({exc})") from None


def read_image(path: str | os.PathLike, mode: str, *, max_pixels: int = MAX_PIXELS,
               max_bytes: int = 256 * 2**20, size: int | None = None) -> Image.Image:
    """Decode an image file, with the same checks as an upload."""
    try:
        nbytes = os.stat(path).st_size
        if nbytes > max_bytes:
            raise ImageRejected(f"file too large: {nbytes / 2**20:.0f} MiB exceeds {max_bytes / 2**20:.0f} MiB", 413)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageRejected(f"cannot read the file ({exc.strerror or exc})") from None
    return decode_image(data, mode, max_pixels=max_pixels, size=size)
