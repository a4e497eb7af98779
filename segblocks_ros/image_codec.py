"""Conversion between ``sensor_msgs`` images and numpy arrays (no cv_bridge).

Decoding turns every supported camera encoding into RGB ``uint8 [H, W, 3]``; encoding
turns the node's outputs (class-id masks, colour masks, block maps) back into
``sensor_msgs/Image``. Decoding is zero-copy where the encoding allows it: rgb8, bgr8,
rgba8, bgra8 and mono8 come back as strided views of the message buffer (row padding,
``step > width * channels``, is skipped by the view), so the only copy is the one the
engine makes when it stacks a batch. YUV 4:2:2 and Bayer images need arithmetic and are
converted with vectorised numpy.

Every malformed message raises :class:`ImageDecodeError`, whose ``kind`` says which rule
it broke (``encoding``, ``empty``, ``too_large``, ``size``, ``format``, ``corrupt``), so
the node can count and log rejections without ever crashing on a camera's bytes.

Colour conventions (those of ``sensor_msgs/image_encodings`` and cv_bridge/OpenCV):

* ``yuv422`` is UYVY (bytes ``U0 Y0 V0 Y1``); ``yuv422_yuy2`` (alias ``yuyv``) is YUYV
  (``Y0 U0 Y1 V0``); ``uyvy`` is accepted as an alias of ``yuv422``. Both use ITU-R BT.601
  with limited ("video") range, Y in 16..235 and U, V in 16..240, as OpenCV's
  ``COLOR_YUV2RGB_UYVY``/``_YUY2`` do.
* ``bayer_<pattern>8`` names the colours of the top-left 2x2 tile in reading order
  (``rggb``: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)). Demosaicing is bilinear:
  each missing colour is the mean of its nearest same-colour neighbours (2 or 4), and the
  border is mirrored, which keeps the Bayer phase, so edge pixels are interpolated the same
  way as inner ones.
"""

from __future__ import annotations

import io
import warnings
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

__all__ = [
    "ImageDecodeError", "DEFAULT_MAX_PIXELS", "SUPPORTED_ENCODINGS", "decode_image",
    "decode_compressed", "decode", "demosaic_bilinear", "yuv422_to_rgb", "mono8_msg",
    "rgb8_msg", "block_map_msg", "overlay",
]

#: Default upper bound on width * height of an input image (a 33 MP, 8K UHD frame fits).
DEFAULT_MAX_PIXELS = 1 << 25

# encoding -> bytes per pixel (YUV 4:2:2: 2 bytes per pixel, 4 per pixel pair)
_BYTES_PER_PIXEL = {
    "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1,
    "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
    "bayer_rggb8": 1, "bayer_bggr8": 1, "bayer_gbrg8": 1, "bayer_grbg8": 1,
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_BYTES_PER_PIXEL)
_UYVY = ("yuv422", "uyvy")
_YUYV = ("yuv422_yuy2", "yuyv")
COMPRESSED_FORMATS = ("JPEG", "PNG")


class ImageDecodeError(ValueError):
    """A camera message that cannot be turned into an RGB image.

    Attributes:
        kind: which rule the message broke: ``encoding`` (unsupported encoding),
            ``empty`` (no pixels or no data), ``too_large`` (more pixels than allowed),
            ``size`` (step/width/height/data length disagree), ``format`` (compressed
            format other than JPEG/PNG) or ``corrupt`` (compressed data does not decode).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# -- decoding ------------------------------------------------------------------------------

def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError("empty", f"{what} is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"{what} has {width}x{height} = {width * height} pixels, more than the "
            f"{max_pixels} allowed (raise max_image_pixels if this camera is real)")


def decode_image(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``sensor_msgs/Image`` -> RGB ``uint8 [H, W, 3]``.

    The result may be a read-only, non-contiguous view of ``msg.data`` (keep ``msg``
    alive while using it; ``np.ascontiguousarray`` it before writing).

    Raises:
        ImageDecodeError: unsupported encoding, empty or too large image, or a step /
            data length that does not match width, height and encoding.
    """
    encoding = msg.encoding.strip().lower()
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if encoding not in _BYTES_PER_PIXEL:
        raise ImageDecodeError(
            "encoding",
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
            f" (or CompressedImage jpeg/png with input_transport: compressed)")
    _check_pixels(width, height, max_pixels, f"{encoding} image")
    bpp = _BYTES_PER_PIXEL[encoding]
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageDecodeError(
            "size", f"step {step} is smaller than width {width} x {bpp} bytes = {row_bytes} "
                    f"for {encoding}")
    nbytes = len(msg.data)
    if nbytes != step * height:
        raise ImageDecodeError(
            "size", f"data has {nbytes} bytes, but step {step} x height {height} = "
                    f"{step * height} for a {width}x{height} {encoding} image")
    if encoding in _UYVY + _YUYV and width % 2:
        raise ImageDecodeError("size", f"{encoding} needs an even width, got {width}")
    if encoding.startswith("bayer_") and (width < 2 or height < 2):
        raise ImageDecodeError("size", f"{encoding} needs at least 2x2 pixels, got {width}x{height}")

    # A [H, step] view of the buffer, then a [H, W, bpp] view that skips row padding.
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, :row_bytes].reshape(height, width, bpp)
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return pixels[..., ::-1]
    if encoding == "rgba8":
        return pixels[..., :3]
    if encoding == "bgra8":
        return pixels[..., 2::-1]
    if encoding == "mono8":
        return np.broadcast_to(pixels, (height, width, 3))
    if encoding in _UYVY or encoding in _YUYV:
        return yuv422_to_rgb(pixels.reshape(height, width * 2), uyvy=encoding in _UYVY)
    return demosaic_bilinear(pixels[..., 0], encoding[len("bayer_"):-1])


def yuv422_to_rgb(packed: np.ndarray, uyvy: bool = True) -> np.ndarray:
    """Packed YUV 4:2:2 ``uint8 [H, 2W]`` -> RGB ``uint8 [H, W, 3]``.

    BT.601 limited range: ``R = 1.164 (Y-16) + 1.596 (V-128)``,
    ``G = 1.164 (Y-16) - 0.392 (U-128) - 0.813 (V-128)``, ``B = 1.164 (Y-16) + 2.017 (U-128)``.

    Args:
        packed: rows of ``U Y V Y`` (``uyvy=True``) or ``Y U Y V`` (``uyvy=False``) bytes.
    """
    h, w2 = packed.shape
    quads = packed.reshape(h, w2 // 4, 4).astype(np.float32)
    if uyvy:
        u, y0, v, y1 = (quads[..., i] for i in range(4))
    else:
        y0, u, y1, v = (quads[..., i] for i in range(4))
    y = np.stack([y0, y1], axis=-1).reshape(h, w2 // 2)          # [H, W]
    u = np.repeat(u - 128.0, 2, axis=1)
    v = np.repeat(v - 128.0, 2, axis=1)
    y = 1.164 * (y - 16.0)
    rgb = np.empty((h, w2 // 2, 3), dtype=np.float32)
    rgb[..., 0] = y + 1.596 * v
    rgb[..., 1] = y - 0.392 * u - 0.813 * v
    rgb[..., 2] = y + 2.017 * u
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def demosaic_bilinear(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Bilinear demosaicing of a Bayer mosaic.

    Args:
        raw: ``uint8 [H, W]`` mosaic (H, W >= 2).
        pattern: ``rggb``, ``bggr``, ``gbrg`` or ``grbg`` (colours of the top-left 2x2 tile
            in reading order).

    Returns:
        RGB ``uint8 [H, W, 3]``.
    """
    if pattern not in ("rggb", "bggr", "gbrg", "grbg"):
        raise ValueError(f"unknown Bayer pattern {pattern!r}")
    h, w = raw.shape
    # Mirroring without repeating the edge keeps every pixel's Bayer phase.
    p = np.pad(raw, 1, mode="reflect").astype(np.uint16)
    centre = p[1:-1, 1:-1]
    cross = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]     # N + S + W + E
    diag = p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]
    horiz = p[1:-1, :-2] + p[1:-1, 2:]
    vert = p[:-2, 1:-1] + p[2:, 1:-1]
    # Values of each colour at the four phases (row parity, column parity) of the tile.
    four = (cross + 2) >> 2
    four_diag = (diag + 2) >> 2
    two_h = (horiz + 1) >> 1
    two_v = (vert + 1) >> 1
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    tile = [pattern[0:2], pattern[2:4]]
    for r in (0, 1):
        for c in (0, 1):
            here = tile[r][c]
            sl = (slice(r, None, 2), slice(c, None, 2))
            out = rgb[sl]
            if here == "g":
                # the other colour on this row comes from the left/right neighbours
                row_colour = tile[r][1 - c]
                col_colour = tile[1 - r][c]
                out[..., 1] = centre[sl]
                out[..., "rgb".index(row_colour)] = two_h[sl]
                out[..., "rgb".index(col_colour)] = two_v[sl]
            else:
                other = "b" if here == "r" else "r"
                out[..., "rgb".index(here)] = centre[sl]
                out[..., 1] = four[sl]
                out[..., "rgb".index(other)] = four_diag[sl]
    return rgb


def decode_compressed(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> RGB ``uint8 [H, W, 3]``.

    The image size is checked against ``max_pixels`` from the file header, before any
    pixel is decoded.

    Raises:
        ImageDecodeError: empty data, a format other than JPEG/PNG (including
            ``compressedDepth``), too many pixels, or data that does not decode.
    """
    from PIL import Image as PILImage

    fmt = msg.format.strip().lower()
    if "compresseddepth" in fmt.replace(" ", ""):
        raise ImageDecodeError("format", f"compressed format {msg.format!r} (depth images) is not "
                                         "supported; send jpeg or png colour images")
    if len(msg.data) == 0:
        raise ImageDecodeError("empty", "compressed image has no data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            im = PILImage.open(io.BytesIO(bytes(msg.data)))
            if im.format not in COMPRESSED_FORMATS:
                raise ImageDecodeError(
                    "format", f"compressed image is {im.format}, not JPEG or PNG (format field "
                              f"{msg.format!r})")
            _check_pixels(im.width, im.height, max_pixels, f"{im.format} image")
            if im.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
                raise ImageDecodeError(
                    "format", f"{im.format} image mode {im.mode} (16-bit or float) is not "
                              "supported; send 8-bit images")
            rgb = np.asarray(im.convert("RGB"))
    except ImageDecodeError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageDecodeError("too_large", f"compressed image is too large: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise ImageDecodeError("corrupt", f"compressed image ({msg.format or 'no format'}) does "
                                          f"not decode: {exc}") from exc
    return rgb


def decode(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an ``Image`` or a ``CompressedImage`` to RGB ``uint8 [H, W, 3]``.

    Dispatches on the message's fields, not its class: messages read from bags by
    ``rosbags`` are its own classes with the same fields.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg, max_pixels)
    return decode_image(msg, max_pixels)


# -- encoding ------------------------------------------------------------------------------

def _image_msg(array: np.ndarray, encoding: str, header) -> Image:
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    msg.step = msg.width * channels
    # bytes are taken over by a single memcpy; a numpy array would go element by element
    msg.data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return msg


def mono8_msg(array: np.ndarray, header=None) -> Image:
    """``uint8 [H, W]`` (e.g. class ids, 255 = ignore) -> mono8 ``Image``."""
    if array.ndim != 2:
        raise ValueError(f"mono8 needs a [H, W] array, got shape {array.shape}")
    return _image_msg(array, "mono8", header)


def rgb8_msg(array: np.ndarray, header=None) -> Image:
    """RGB ``uint8 [H, W, 3]`` -> rgb8 ``Image``."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"rgb8 needs a [H, W, 3] array, got shape {array.shape}")
    return _image_msg(array, "rgb8", header)


def block_map_msg(grid: np.ndarray, header=None) -> Image:
    """High-res block grid ``bool [GH, GW]`` -> mono8 ``Image``, one pixel per block,
    255 = high resolution, 0 = low resolution."""
    return mono8_msg(np.where(grid, np.uint8(255), np.uint8(0)), header)


def overlay(rgb: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * rgb + alpha * color`` for ``uint8 [H, W, 3]`` images."""
    a = float(alpha)
    blend = rgb.astype(np.float32) * (1.0 - a) + color.astype(np.float32) * a
    return np.clip(blend + 0.5, 0, 255, out=blend).astype(np.uint8)
