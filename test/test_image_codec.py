"""segblocks_ros.image_codec: every input encoding round-trips, every malformed message is
rejected with its own kind, and outputs encode to well-formed sensor_msgs/Image.

The RGB -> encoding encoders below are written from the encoding definitions (ROS
image_encodings, ITU-R BT.601), independently of the decoder under test.
"""

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from segblocks_ros.image_codec import (ImageDecodeError, block_map_msg, decode, decode_compressed,
                                       decode_image, mono8_msg, overlay, rgb8_msg)


# -- independent encoders ------------------------------------------------------------------

def make_msg(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """Pack ``[H, W, C]`` or ``[H, W]`` bytes into an Image with ``pad`` bytes per row
    (packed YUV 4:2:2 comes as ``[H, 2W]``)."""
    h, w = pixels.shape[:2]
    if encoding.strip().lower() in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        w //= 2
    rows = pixels.reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=rows.shape[1], data=rows.tobytes())


def encode_simple(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[..., [2, 1, 0]]
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    if encoding == "rgba8":
        return np.concatenate([rgb, alpha], axis=2)
    if encoding == "bgra8":
        return np.concatenate([rgb[..., [2, 1, 0]], alpha], axis=2)
    if encoding == "mono8":
        return rgb[..., 0]
    raise AssertionError(encoding)


def rgb_to_ycbcr601(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited range, from the standard's definition (R', G', B' in [0, 1])."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255.0 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return np.clip(np.round(np.stack([y, cb, cr], -1)), 0, 255).astype(np.uint8)


def encode_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """Packed 4:2:2 ``[H, 2W]``; chroma of each pixel pair from its left pixel."""
    ycc = rgb_to_ycbcr601(rgb)
    y = ycc[..., 0]
    u = ycc[:, 0::2, 1]
    v = ycc[:, 0::2, 2]
    h, w = y.shape
    out = np.empty((h, w // 2, 4), np.uint8)
    order = (u, y[:, 0::2], v, y[:, 1::2]) if uyvy else (y[:, 0::2], u, y[:, 1::2], v)
    for i, plane in enumerate(order):
        out[..., i] = plane
    return out.reshape(h, w * 2)


def encode_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    raw = np.empty(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        r, c = divmod(k, 2)
        raw[r::2, c::2] = rgb[r::2, c::2, "rgb".index(colour)]
    return raw


def random_rgb(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- packed RGB/mono: exact and zero-copy ---------------------------------------------------

@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_packed_encodings_round_trip_exactly_and_zero_copy(encoding, pad):
    rgb = random_rgb(7, 9)
    if encoding == "mono8":
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    msg = make_msg(encode_simple(rgb, encoding), encoding, pad)
    out = decode_image(msg)
    assert out.shape == (7, 9, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)), "expected a view, not a copy"


def test_encoding_names_are_case_and_space_tolerant():
    rgb = random_rgb()
    msg = make_msg(encode_simple(rgb, "bgr8"), " BGR8 ")
    np.testing.assert_array_equal(decode_image(msg), rgb)


def test_is_bigendian_is_irrelevant_for_8_bit():
    rgb = random_rgb()
    msg = make_msg(rgb, "rgb8")
    msg.is_bigendian = 1
    np.testing.assert_array_equal(decode_image(msg), rgb)


# -- YUV 4:2:2 --------------------------------------------------------------------------------

YUV_ENCODINGS = [("yuv422", True), ("uyvy", True), ("yuv422_yuy2", False), ("yuyv", False)]


@pytest.mark.parametrize("encoding,uyvy", YUV_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 4])
def test_yuv422_round_trip(encoding, uyvy, pad):
    # chroma is shared by pixel pairs: give both pixels of a pair the same colour
    rgb = np.repeat(random_rgb(6, 5, seed=3), 2, axis=1)
    out = decode_image(make_msg(encode_yuv422(rgb, uyvy), encoding, pad))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).max() <= 3


@pytest.mark.parametrize("encoding,uyvy", YUV_ENCODINGS)
def test_yuv422_luma_per_pixel_and_byte_order(encoding, uyvy):
    # grey pixels that differ inside a pair: each pixel must get its own Y
    grey = np.array([[0, 255, 40, 200]], np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    out = decode_image(make_msg(encode_yuv422(rgb, uyvy), encoding))
    assert np.abs(out.astype(int) - rgb).max() <= 2


def test_yuv422_known_values():
    # BT.601 limited range: (Y, U, V) = (235, 128, 128) white, (16, 128, 128) black,
    # (81, 90, 240) red
    uyvy = np.array([[128, 235, 128, 16, 90, 81, 240, 81]], np.uint8)
    out = decode_image(make_msg(uyvy, "yuv422")).astype(int)
    expected = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [255, 0, 0]]])
    assert np.abs(out - expected).max() <= 2
    # the same bytes read as YUYV mean something else entirely
    assert np.abs(decode_image(make_msg(uyvy, "yuyv")).astype(int) - expected).max() > 50


# -- Bayer --------------------------------------------------------------------------------------

PATTERNS = ["rggb", "bggr", "gbrg", "grbg"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(6, 8), (5, 7), (2, 2)])
def test_bayer_constant_colour_is_exact(pattern, shape):
    rgb = np.empty(shape + (3,), np.uint8)
    rgb[:] = (200, 90, 30)  # every channel different: a wrong phase swaps or mixes them
    out = decode_image(make_msg(encode_bayer(rgb, pattern), f"bayer_{pattern}8"))
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_bayer_keeps_measured_samples_and_interpolates_linear_ramps(pattern):
    h, w = 12, 16
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([10 + 8 * xx, 20 + 9 * yy, 5 + 4 * xx + 5 * yy], -1).astype(np.uint8)
    raw = encode_bayer(rgb, pattern)
    out = decode_image(make_msg(raw, f"bayer_{pattern}8", pad=3))
    for k, colour in enumerate(pattern):
        r, c = divmod(k, 2)
        ch = "rgb".index(colour)
        np.testing.assert_array_equal(out[r::2, c::2, ch], raw[r::2, c::2])
    # bilinear interpolation reproduces linear ramps away from the mirrored border
    inner = (slice(1, -1), slice(1, -1))
    assert np.abs(out[inner].astype(int) - rgb[inner]).max() <= 1


# -- compressed ------------------------------------------------------------------------------

def compressed(rgb: np.ndarray, fmt: str, field: str = None) -> CompressedImage:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt)
    return CompressedImage(format=field if field is not None else fmt.lower(), data=buf.getvalue())


def test_png_is_exact_and_jpeg_close():
    rgb = random_rgb(32, 48, seed=5)
    np.testing.assert_array_equal(decode_compressed(compressed(rgb, "PNG")), rgb)
    yy, xx = np.mgrid[0:32, 0:48]
    smooth = np.stack([4 * xx, 6 * yy, 2 * (xx + yy)], -1).astype(np.uint8)
    out = decode(compressed(smooth, "JPEG", "bgr8; jpeg compressed bgr8"))
    assert out.shape == smooth.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_grey_png_becomes_rgb():
    grey = random_rgb(8, 8)[..., 0]
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="PNG")
    out = decode_compressed(CompressedImage(format="png", data=buf.getvalue()))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("msg,kind", [
    (CompressedImage(format="jpeg", data=b""), "empty"),
    (CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 definitely not a jpeg"), "corrupt"),
    (CompressedImage(format="16UC1; compressedDepth", data=b"\x00" * 20), "format"),
])
def test_bad_compressed_messages(msg, kind):
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(msg)
    assert info.value.kind == kind


def test_truncated_jpeg_is_corrupt():
    msg = compressed(random_rgb(64, 64), "JPEG")
    msg.data = bytes(msg.data)[:200]
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(msg)
    assert info.value.kind == "corrupt"


def test_compressed_format_other_than_jpeg_png_is_rejected():
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(compressed(random_rgb(8, 8), "BMP", "bmp"))
    assert info.value.kind == "format" and "BMP" in str(info.value)


def test_compressed_size_checked_before_decoding():
    msg = compressed(random_rgb(100, 100), "PNG")
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(msg, max_pixels=5000)
    assert info.value.kind == "too_large" and "10000" in str(info.value)


# -- malformed raw messages ----------------------------------------------------------------

def raw(encoding="rgb8", height=4, width=6, step=None, nbytes=None):
    step = width * 3 if step is None else step
    nbytes = step * height if nbytes is None else nbytes
    return Image(height=height, width=width, encoding=encoding, step=step, data=bytes(nbytes))


@pytest.mark.parametrize("msg,kind,text", [
    (raw(encoding="16UC1"), "encoding", "16UC1"),
    (raw(encoding=""), "encoding", "supported"),
    (raw(height=0, width=0, step=0), "empty", "empty"),
    (raw(height=4, width=0, step=0), "empty", "empty"),
    (raw(height=100000, width=100000, step=300000, nbytes=10), "too_large", "max_image_pixels"),
    (raw(step=17), "size", "step 17"),
    (raw(nbytes=4 * 18 - 1), "size", "71 bytes"),
    (raw(nbytes=4 * 18 + 5), "size", "77 bytes"),
    (raw(encoding="yuv422", width=5, step=10), "size", "even width"),
    (raw(encoding="bayer_rggb8", height=1, width=6, step=6), "size", "2x2"),
])
def test_malformed_raw_messages_are_rejected_with_their_kind(msg, kind, text):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(msg)
    assert info.value.kind == kind
    assert text in str(info.value)


def test_max_pixels_is_configurable():
    msg = make_msg(random_rgb(10, 10), "rgb8")
    assert decode_image(msg, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(msg, max_pixels=99)
    assert info.value.kind == "too_large"


def test_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)


# -- outputs ------------------------------------------------------------------------------------

def header(frame_id="cam", sec=12, nanosec=345):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def test_mono8_and_rgb8_messages_round_trip_with_header():
    labels = np.random.default_rng(1).integers(0, 19, (5, 7), dtype=np.uint8)
    m = mono8_msg(labels, header())
    assert (m.encoding, m.height, m.width, m.step, m.is_bigendian) == ("mono8", 5, 7, 7, 0)
    assert (m.header.frame_id, m.header.stamp.sec, m.header.stamp.nanosec) == ("cam", 12, 345)
    np.testing.assert_array_equal(np.frombuffer(m.data, np.uint8).reshape(5, 7), labels)
    rgb = random_rgb(5, 7)
    c = rgb8_msg(rgb[:, ::-1], header())  # non-contiguous input is fine
    assert (c.encoding, c.step) == ("rgb8", 21)
    np.testing.assert_array_equal(decode_image(c), rgb[:, ::-1])
    with pytest.raises(ValueError):
        mono8_msg(rgb)
    with pytest.raises(ValueError):
        rgb8_msg(labels)


def test_block_map_is_one_pixel_per_block_255_high_res():
    grid = np.array([[True, False, False], [False, True, True]])
    m = block_map_msg(grid, header())
    assert (m.encoding, m.height, m.width) == ("mono8", 2, 3)
    np.testing.assert_array_equal(np.frombuffer(m.data, np.uint8).reshape(2, 3),
                                  [[255, 0, 0], [0, 255, 255]])


def test_overlay_blends():
    a = np.full((2, 2, 3), 200, np.uint8)
    b = np.full((2, 2, 3), 100, np.uint8)
    np.testing.assert_array_equal(overlay(a, b, 0.0), a)
    np.testing.assert_array_equal(overlay(a, b, 1.0), b)
    np.testing.assert_array_equal(overlay(a, b, 0.5), np.full((2, 2, 3), 150, np.uint8))


# -- agreement with the bag writer -------------------------------------------------------------

def test_decodes_what_the_bag_writer_encodes():
    """Bags written by segblocks_ros.bagfiles must come back as the RGB they were made from."""
    bagfiles = pytest.importorskip("segblocks_ros.bagfiles")
    h, w = 12, 16
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([10 + 8 * xx, 20 + 9 * yy, 200 - 5 * yy], -1).astype(np.uint8)
    pairs = ramp[:, 0::2].repeat(2, axis=1)  # YUV 4:2:2 shares chroma over pixel pairs
    for encoding in bagfiles.ENCODINGS:
        rgb = pairs if "yuv" in encoding or "yuyv" in encoding or "uyvy" in encoding else ramp
        data, step = bagfiles.encode_rgb(rgb, encoding)
        msg = Image(height=h, width=w, encoding=encoding, step=step, data=data)
        out = decode_image(msg).astype(int)
        if encoding == "mono8":
            luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
            assert np.abs(out - luma[..., None]).max() <= 1, encoding
        elif encoding.startswith("bayer_"):
            assert np.abs(out[1:-1, 1:-1] - rgb[1:-1, 1:-1]).max() <= 1, encoding
        else:
            assert np.abs(out - rgb).max() <= 3, encoding


def test_decode_dispatches_on_fields_for_bag_messages():
    """Messages read from bags by rosbags are not rclpy classes; decode() must still pick
    the compressed decoder for them."""
    from rosbags.typesys import Stores, get_typestore

    from segblocks_ros.bagfiles import encode_compressed

    store = get_typestore(Stores.ROS2_HUMBLE)
    Compressed = store.types["sensor_msgs/msg/CompressedImage"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    rgb = np.zeros((8, 16, 3), np.uint8)
    rgb[:, 8:] = (200, 30, 60)
    msg = Compressed(header=Header(stamp=Time(sec=1, nanosec=2), frame_id="cam"), format="png",
                     data=np.frombuffer(encode_compressed(rgb, "png"), np.uint8))
    from segblocks_ros.image_codec import decode
    assert (decode(msg) == rgb).all()
