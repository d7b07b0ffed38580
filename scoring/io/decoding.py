"""Decoding images: one read through the one reader, hashed as read, decoded at the scale the
pool needs, converted to RGB; every failure an ImageDecodeError naming the file."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from scoring.errors import ImageTriageError, UnsafePathError
from scoring.io.datasets import is_uri, read_bytes
from scoring.io.safeio import sha1_regular


class ImageDecodeError(ImageTriageError):
    """One image that cannot be decoded; ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Grey, palette, CMYK, 16-bit and alpha images -> 8-bit RGB (alpha over white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max(initial=1.0)
        scale = 1.0 if hi <= 1.0 else 255.0 if hi <= 255.0 else hi
        return Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Decode an image to RGB: EXIF orientation applied, first frame, modes converted.

    ``path`` is a file or a URI (see :func:`is_uri`). Raises ImageDecodeError naming the file for
    a missing, empty, truncated, unidentified or oversized (past Pillow's decompression-bomb
    limit) file.
    """
    return load_image_and_sha1(path)[0]


def load_image_and_sha1(path: str | Path) -> tuple[Image.Image, str]:
    """Read the file once; decode it and hash its bytes (SHA-1) from the same read."""
    img, sha1, _size = decode_for(path)
    return img, sha1


def decode_for(path: str | Path, min_side: int | None = None,
               min_long: int | None = None) -> tuple[Image.Image, str, tuple[int, int]]:
    """Read once, hash (SHA-1), and decode at the smallest scale whose shorter side still covers
    ``min_side`` and whose longer side covers ``min_long`` (JPEGs decode at 1/2, 1/4 or 1/8 scale
    inside libjpeg: a 4 MP photo wanted at 32 px decodes several times faster). Returns the image,
    the hash and the full (width, height) as displayed (EXIF orientation applied)."""
    p: str | Path = path if is_uri(path) else Path(path)
    try:
        data = read_bytes(p)
    except OSError as exc:
        raise ImageDecodeError(p, f"cannot read the file ({exc.strerror or exc})") from exc
    except UnsafePathError as exc:
        raise ImageDecodeError(p, str(exc).removeprefix(f"{p}: ")) from exc
    if not data:
        raise ImageDecodeError(p, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.seek(0)
                w, h = im.size
                full = (h, w) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)  # EXIF: rotated 90
                scale = max((min_side or 0) / max(min(w, h), 1), (min_long or 0) / max(w, h, 1))
                if (min_side or min_long) and im.format == "JPEG" and scale < 0.5:
                    im.draft("RGB", (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
                im.load()
                img = ImageOps.exif_transpose(im) or im
                if img is im:
                    img = im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            p,
            f"larger than Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels ({exc}); "
            "if the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(p, "not an image Pillow can read (unknown or corrupt format)") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            msg = "truncated file (image data ends early)"
        raise ImageDecodeError(p, msg) from exc
    except (ValueError, SyntaxError, EOFError) as exc:  # Pillow plugins raise these on corrupt data
        raise ImageDecodeError(p, f"corrupt image data ({exc})") from exc
    return _to_rgb(img), hashlib.sha1(data).hexdigest(), full


def file_sha1(path: str | Path) -> str:
    """Hex SHA-1 of a file's (or URI's) bytes, local files read in 1 MiB chunks."""
    if is_uri(path):
        return hashlib.sha1(read_bytes(path)).hexdigest()
    return sha1_regular(path)
