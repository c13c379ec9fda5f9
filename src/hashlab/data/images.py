"""Decode images defensively, and iterate over a data set's images whatever their storage.

Images reach hashlab from users' folders and from HTTP uploads, so every way a file can be
bad ends in one ``ImageError`` sentence instead of a PIL traceback: missing, empty (0 bytes),
not an image, truncated or corrupt, or a decompression bomb (a small file declaring a huge
canvas, which would take gigabytes to decode). Size is checked from the header *before*
any pixel is decoded.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hashlab.data.dataset import DataError, Dataset

# 64 megapixels: well above any photo a retrieval system needs, far below what exhausts RAM
# (an RGB canvas this size is 192 MB decoded).
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(DataError):
    """An image that cannot be decoded safely, explained in one sentence."""


def _describe(source: str | Path | bytes | BinaryIO) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the {len(source):,}-byte upload"
    return getattr(source, "name", "the image stream")


def open_image(
    source: str | Path | bytes | BinaryIO, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> object:
    """A fully decoded RGB ``PIL.Image`` from a path, bytes or a binary stream.

    EXIF orientation is applied (phone photos are stored sideways) and transparent pixels
    are composited on white, so the same picture always gives the same pixels. Raises
    ``ImageError`` for every bad input; ``max_pixels=None`` keeps only PIL's own bomb limit.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    what = _describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"image {what} does not exist")
        if not path.is_file():
            raise ImageError(f"image {what} is not a file")
        if path.stat().st_size == 0:
            raise ImageError(f"image {what} is empty (0 bytes)")
        try:
            stream: BinaryIO = open(path, "rb")  # closed in the finally below
        except OSError as error:
            raise ImageError(f"image {what} cannot be read: {error.strerror}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("the uploaded image is empty (0 bytes)")
        stream = io.BytesIO(bytes(source))
    else:
        stream = source
    try:
        try:
            image = Image.open(stream)
        except Image.DecompressionBombError as error:
            raise ImageError(f"image {what} is a decompression bomb: {_clean(error)}") from None
        except UnidentifiedImageError:
            raise ImageError(f"{what} is not an image format PIL can read") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(
                f"image {what} is truncated or corrupt (its header cannot be read: {_clean(error)})"
            ) from None
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageError(
                f"image {what} declares {width} x {height} pixels, more than the limit of "
                f"{max_pixels:,} (a decompression bomb or an oversized image)"
            )
        if width == 0 or height == 0:
            raise ImageError(f"image {what} has zero width or height")
        try:
            image.load()
        except Image.DecompressionBombError as error:
            raise ImageError(f"image {what} is a decompression bomb: {_clean(error)}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageError(f"image {what} is truncated or corrupt: {_clean(error)}") from None
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # a malformed EXIF block only costs the rotation, not the image
            pass
        return _to_rgb(image)
    finally:
        if isinstance(source, (str, Path, bytes, bytearray, memoryview)):
            stream.close()


def _clean(error: BaseException) -> str:
    """PIL's message without its trailing full stop, so ours stays one sentence."""
    return str(error).strip().rstrip(".")


def _to_rgb(image: object) -> object:
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def array_to_image(array: np.ndarray) -> object:
    """One (H, W) or (H, W, 3) uint8 array as an RGB ``PIL.Image``."""
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ImageError(f"in-memory images must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        return Image.fromarray(array).convert("RGB")
    raise ImageError(f"an in-memory image must be (H, W) or (H, W, 3), got {array.shape}")


def dataset_images(
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Iterator[object]:
    """RGB ``PIL.Image`` objects for ``indices`` (default: all items), in that order."""
    order = range(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    if dataset.image_paths is not None:
        for i in order:
            yield open_image(dataset.image_paths[int(i)], max_pixels=max_pixels)
    elif dataset.images is not None:
        for i in order:
            yield array_to_image(dataset.images[int(i)])
    else:
        raise DataError(f"{dataset.name} has no images (neither image_paths nor images)")
