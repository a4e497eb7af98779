"""rosbag2 writing and reading with rosbags: both storages, raw and compressed images,
label topics, stamps, encodings, errors."""

import io
import os

import numpy as np
import pytest

pytest.importorskip("rosbags")

from PIL import Image  # noqa: E402

from segblocks_core.data.scenes import render_sequence  # noqa: E402
from segblocks_ros.bagfiles import (  # noqa: E402
    COMPRESSED_TYPE, ENCODINGS, IMAGE_TYPE, BagError, FrameStats, ImageBagWriter, encode_rgb,
    label_array, list_topics, read_frames, read_messages, write_synthetic_bag)

H, W = 32, 64


@pytest.fixture(scope="module")
def frames():
    return list(render_sequence(9, 4, H, W, speed=1.5))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [None, "png", "jpeg"])
@pytest.mark.parametrize("labels", [True, False])
def test_written_bag_reads_back_frame_for_frame(tmp_path, frames, storage, compressed, labels):
    path = tmp_path / "bag"
    info = write_synthetic_bag(path, 4, H, W, seed=9, storage=storage, compressed=compressed,
                               label_topic="/camera/labels" if labels else None, rate_hz=20.0, speed=1.5)
    assert info.frames == 4
    assert info.stamps == [info.stamps[0] + i * 50_000_000 for i in range(4)]
    topics = list_topics(path)
    assert topics["/camera/image_raw"].msgtype == (COMPRESSED_TYPE if compressed else IMAGE_TYPE)
    assert topics["/camera/image_raw"].count == 4
    assert ("/camera/labels" in topics) == labels
    if storage == "mcap":
        assert any(name.endswith(".mcap") for name in os.listdir(path))
    stats = FrameStats()
    got = list(read_frames(path, "/camera/image_raw", "/camera/labels" if labels else None, stats))
    assert [f.stamp_ns for f in got] == info.stamps
    assert stats.images == 4 and stats.images_without_label == 0 and stats.labels_without_image == 0
    for frame, scene in zip(got, frames):
        assert frame.frame_id == "camera"
        if compressed:
            decoded = np.asarray(Image.open(io.BytesIO(frame.image.data.tobytes())).convert("RGB"))
            if compressed == "png":
                np.testing.assert_array_equal(decoded, scene.image)
            else:
                assert np.abs(decoded.astype(int) - scene.image).mean() < 6
            assert frame.image.format == compressed
        else:
            assert (frame.image.height, frame.image.width, frame.image.encoding) == (H, W, "rgb8")
            assert frame.image.step == 3 * W
            np.testing.assert_array_equal(frame.image.data.reshape(H, W, 3), scene.image)
        if labels:
            np.testing.assert_array_equal(frame.label, scene.label)
        else:
            assert frame.label is None


def test_read_messages_yields_header_stamps_and_frame_ids(tmp_path, frames):
    path = tmp_path / "bag"
    info = write_synthetic_bag(path, 2, H, W, seed=9, storage="mcap", encoding="bgr8", frame_id="cam_front",
                               start_ns=5_000_000_123)
    seen = [(t, s, f, m.encoding) for t, s, f, m in read_messages(path)]
    assert sorted(seen) == sorted([("/camera/image_raw", s, "cam_front", "bgr8") for s in info.stamps] +
                                  [("/camera/labels", s, "cam_front", "mono8") for s in info.stamps])
    assert info.stamps[0] == 5_000_000_123


def test_unmatched_images_and_labels_are_counted_not_dropped(tmp_path, frames):
    path = tmp_path / "bag"
    with ImageBagWriter(path, "sqlite3") as w:
        for i, scene in enumerate(frames[:3]):
            w.write_image("/img", scene.image, 1000 + i)
        w.write_label("/lab", frames[0].label, 1000)
        w.write_label("/lab", frames[2].label, 1002)
        w.write_label("/lab", frames[3].label, 1007)          # no image with this stamp
    stats = FrameStats()
    got = {f.stamp_ns: f.label for f in read_frames(path, "/img", "/lab", stats)}
    assert sorted(got) == [1000, 1001, 1002]
    assert got[1001] is None
    np.testing.assert_array_equal(got[1002], frames[2].label)
    assert (stats.images, stats.labels, stats.matched) == (3, 3, 2)
    assert stats.images_without_label == 1 and stats.labels_without_image == 1


def rgb_image(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encodings_have_the_documented_layout(encoding):
    rgb = rgb_image()
    data, step = encode_rgb(rgb, encoding)
    bpp = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding, 2 if "yu" in encoding or encoding == "uyvy" else 1)
    assert step == 8 * bpp and len(data) == 6 * step
    px = np.frombuffer(data, np.uint8).reshape(6, step)
    if encoding == "bgr8":
        np.testing.assert_array_equal(px.reshape(6, 8, 3), rgb[..., ::-1])
    elif encoding in ("rgba8", "bgra8"):
        q = px.reshape(6, 8, 4)
        assert (q[..., 3] == 255).all()
        np.testing.assert_array_equal(q[..., :3], rgb if encoding == "rgba8" else rgb[..., ::-1])
    elif encoding == "mono8":
        expected = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
        assert np.abs(px.astype(int) - expected).max() <= 1
    elif encoding.startswith("bayer_"):
        pattern = encoding[6:10]
        for k, colour in enumerate(pattern):
            r, c = divmod(k, 2)
            np.testing.assert_array_equal(px[r::2, c::2], rgb[r::2, c::2, "rgb".index(colour)])


def test_yuv422_byte_order_and_bt601_video_range():
    white_black = np.array([[[255, 255, 255], [255, 255, 255], [0, 0, 0], [0, 0, 0]]], np.uint8)
    uyvy = np.frombuffer(encode_rgb(white_black, "yuv422")[0], np.uint8)
    np.testing.assert_array_equal(uyvy, [128, 235, 128, 235, 128, 16, 128, 16])
    yuyv = np.frombuffer(encode_rgb(white_black, "yuyv")[0], np.uint8)
    np.testing.assert_array_equal(yuyv, [235, 128, 235, 128, 16, 128, 16, 128])
    red = np.array([[[255, 0, 0], [255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(np.frombuffer(encode_rgb(red, "uyvy")[0], np.uint8), [90, 81, 240, 81])
    with pytest.raises(ValueError, match="even width"):
        encode_rgb(rgb_image(4, 5), "yuv422")


def test_node_decoder_inverts_the_encoder():
    codec = pytest.importorskip("segblocks_ros.image_codec")
    from sensor_msgs.msg import Image as RosImage

    rgb = rgb_image(8, 10)
    pairs = np.repeat(rgb[:, ::2], 2, axis=1)                 # 4:2:2 keeps colour per pixel pair
    for encoding in ENCODINGS:
        src = pairs if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") else rgb
        data, step = encode_rgb(src, encoding)
        msg = RosImage(height=8, width=10, encoding=encoding, step=step, data=data)
        out = codec.decode_image(msg).astype(int)
        if encoding == "mono8":
            np.testing.assert_array_equal(out[..., 0], np.frombuffer(data, np.uint8).reshape(8, 10))
        elif encoding.startswith("bayer_"):
            for k, colour in enumerate(encoding[6:10]):
                r, c = divmod(k, 2)
                ch = "rgb".index(colour)
                np.testing.assert_array_equal(out[r::2, c::2, ch], src[r::2, c::2, ch])
        elif "yu" in encoding or encoding == "uyvy":
            assert np.abs(out - src).max() <= 3, encoding
        else:
            np.testing.assert_array_equal(out, src)


def test_errors_are_clear(tmp_path, frames):
    with pytest.raises(BagError, match="does not exist"):
        list_topics(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="not a rosbag2"):
        list_topics(tmp_path / "plain")
    path = tmp_path / "bag"
    write_synthetic_bag(path, 1, H, W, seed=9, label_topic=None)
    with pytest.raises(BagError, match=r"'/x' is not in .*/camera/image_raw \(sensor_msgs/msg/Image, 1\)"):
        list(read_messages(path, ["/x"]))
    with pytest.raises(BagError, match="carries sensor_msgs/msg/Image, expected"):
        list(read_messages(path, ["/camera/image_raw"], {"/camera/image_raw": "std_msgs/msg/String"}))
    with pytest.raises(BagError, match="exists already"):
        write_synthetic_bag(path, 1, H, W)
    write_synthetic_bag(path, 2, H, W, overwrite=True, label_topic=None)
    assert list_topics(path)["/camera/image_raw"].count == 2
    with pytest.raises(ValueError, match="unsupported encoding"):
        write_synthetic_bag(tmp_path / "bad", 1, H, W, encoding="rgb16")
    assert not (tmp_path / "bad").exists()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    with pytest.raises(BagError, match="cannot open"):
        list_topics(tmp_path / "corrupt")


def test_failed_recording_leaves_no_bag(tmp_path, frames):
    path = tmp_path / "bag"
    with pytest.raises(ValueError):
        with ImageBagWriter(path, "mcap") as w:
            w.write_image("/img", frames[0].image, 1)
            w.write_label("/lab", frames[0].image, 1)         # RGB is not a label
    assert not path.exists()


def test_label_array_respects_step():
    class Msg:
        encoding, height, width, step = "mono8", 2, 3, 4
        data = np.array([1, 2, 3, 0, 4, 5, 6, 0], np.uint8)
    np.testing.assert_array_equal(label_array(Msg), [[1, 2, 3], [4, 5, 6]])
    Msg.encoding = "rgb8"
    with pytest.raises(BagError, match="mono8"):
        label_array(Msg)
