"""The SegBlocks node through real rclpy: topics, headers, stats, parameters, rejection of
malformed frames, compressed input, multi-camera batching, frame accounting.

Every node runs in-process (so tests can compare with its engine and read its counters)
but talks to the test only through DDS topics and the parameter services, exactly like
``ros2 topic``/``ros2 param`` would. CPU, random weights, small images.
"""

import io
import math
import threading
import time
from typing import Optional

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from PIL import Image as PILImage
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

import segblocks_ros.node as node_module
from conftest import graded_texture
from conftest_ros import (Inbox, flat_and_textured, image_msg, ros, stats_values,  # noqa: F401
                          wait_until)
from segblocks_core.classes import CITYSCAPES_PALETTE
from segblocks_ros.node import STATS_HISTORY_DEPTH, STATS_KEYS, TAU_MAX, StartupError

REQUIRED_STATS = (
    "tau", "adaptive", "highres_fraction", "blocks_highres", "blocks_total", "gmacs_effective",
    "gmacs_dense", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms",
    "frames_received", "frames_processed", "frames_dropped", "frames_rejected",
)


def pixels(msg: Image) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3}[msg.encoding]
    assert msg.step == msg.width * channels and len(msg.data) == msg.step * msg.height
    arr = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, channels)
    return arr[..., 0] if channels == 1 else arr


def same_header(a, b) -> bool:
    return (a.frame_id == b.frame_id and a.stamp.sec == b.stamp.sec
            and a.stamp.nanosec == b.stamp.nanosec)


def accounting_holds(v: dict) -> bool:
    return int(v["frames_received"]) == (int(v["frames_processed"]) + int(v["frames_dropped"])
                                         + int(v["frames_rejected"]))


class Topics:
    """Test-side endpoints of one node (or one camera of it)."""

    def __init__(self, ros, node, camera: str = "", compressed: bool = False,
                 outputs=("mask", "block_map", "stats")):
        base = f"{node.get_namespace()}/{camera + '/' if camera else ''}"
        self.base = base
        self.inboxes = {}
        for out in outputs:
            msg_type = DiagnosticArray if out == "stats" else Image
            self.inboxes[out] = ros.inbox(msg_type, f"{base}segmentation/{out}")
        in_type, in_topic = ((CompressedImage, "image/compressed") if compressed else (Image, "image"))
        self.pub = ros.publisher(in_type, base + in_topic, wait_for=node)

    def __getattr__(self, name) -> Inbox:
        try:
            return self.__dict__["inboxes"][name]
        except KeyError:
            raise AttributeError(name) from None

    def send(self, msg, timeout: float = 30.0, republish_every: Optional[float] = 3.0) -> dict:
        """Publish ``msg`` and return the stats values of its frame. With the default
        best-effort input QoS the message is published again every ``republish_every``
        seconds until its stats arrive; None publishes once (reliable input QoS)."""
        deadline = time.monotonic() + timeout
        while True:
            self.pub.publish(msg)
            wait = deadline - time.monotonic()
            if republish_every is not None:
                wait = min(republish_every, wait)
            try:
                return stats_values(self.stats.frame(msg.header.frame_id, timeout=max(wait, 0.0)))
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise


# -- outputs -----------------------------------------------------------------------------------

def test_mask_block_map_and_stats_carry_the_input_header(ros):
    node = ros.start_node()
    t = Topics(ros, node)
    img = flat_and_textured(120, 200)  # not a multiple of the 64-px block: partial blocks
    msg = image_msg(img, "camera_optical_frame", stamp_ns=1_700_000_000_123_456_789)
    v = t.send(msg)
    mask, block_map, stats = (t.mask.frame(msg.header.frame_id), t.block_map.frame(msg.header.frame_id),
                              t.stats.frame(msg.header.frame_id))
    for out in (mask, block_map, stats):
        assert same_header(out.header, msg.header)
    assert (mask.encoding, mask.height, mask.width) == ("mono8", 120, 200)
    labels = pixels(mask)
    assert labels.max() < 19
    # flat left half (x < 100) -> low-res; every block touching the noise -> high-res
    assert (block_map.encoding, block_map.height, block_map.width) == ("mono8", 2, 4)
    np.testing.assert_array_equal(pixels(block_map), [[0, 255, 255, 255]] * 2)
    # the published mask is the engine's answer for this image
    expected = node.engine.infer(img, tau=0.3).labels[0]
    np.testing.assert_array_equal(labels, expected)

    assert set(REQUIRED_STATS) <= set(v) and list(v) == list(STATS_KEYS)
    assert float(v["tau"]) == pytest.approx(0.3) and v["adaptive"] == "true"
    assert (int(v["blocks_highres"]), int(v["blocks_total"])) == (6, 8)
    assert float(v["highres_fraction"]) == pytest.approx(0.75)
    assert float(v["gmacs_effective"]) < float(v["gmacs_dense"])
    assert (int(v["width"]), int(v["height"]), int(v["batch_size"])) == (200, 120, 1)
    for key in ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms"):
        assert float(v[key]) >= 0
    assert float(v["total_ms"]) >= float(v["inference_ms"])
    assert int(v["frames_processed"]) >= 1 and accounting_holds(v)
    assert stats.status[0].level == DiagnosticStatus.OK
    assert stats.status[0].name == f"{node.get_fully_qualified_name()}: image"


def test_stats_are_kept_for_subscribers_that_match_late(ros):
    """Statistics are transient local (depth STATS_HISTORY_DEPTH): a subscription made after
    a frame was processed still gets its statistics, which segblocks-replay-bag relies on
    when the node's side matches its subscription late. Volatile subscribers match too and
    get only what comes after."""
    node = ros.start_node()
    t = Topics(ros, node)
    first = image_msg(flat_and_textured(64, 128), "before_any_late_subscriber", stamp_ns=1_700_000_000_000)
    t.send(first)
    topic = t.stats.subscription.topic_name
    offered = [i.qos_profile.durability for i in ros.helper.get_publishers_info_by_topic(topic)]
    assert offered == [DurabilityPolicy.TRANSIENT_LOCAL]

    late_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    late = ros.inbox(DiagnosticArray, topic, late_qos)
    assert same_header(late.frame(first.header.frame_id, timeout=10.0).header, first.header)
    volatile = ros.inbox(DiagnosticArray, topic)
    wait_until(lambda: volatile.subscription.get_publisher_count() > 0, 10.0, "a matched publisher")
    second = image_msg(flat_and_textured(64, 128, seed=1), "after_both_subscribed")
    t.send(second)
    volatile.frame(second.header.frame_id, timeout=10.0)
    late.frame(second.header.frame_id, timeout=10.0)
    assert all(m.header.frame_id != first.header.frame_id for m in volatile.snapshot())
    # the history is bounded: more frames than the depth, and a new late subscriber gets
    # only the newest STATS_HISTORY_DEPTH
    for i in range(STATS_HISTORY_DEPTH + 1):
        t.send(image_msg(flat_and_textured(64, 128, seed=2 + i), f"burst_{i}"))
    newest = ros.inbox(DiagnosticArray, topic, late_qos)
    newest.frame(f"burst_{STATS_HISTORY_DEPTH}", timeout=10.0)
    time.sleep(0.2)
    assert [m.header.frame_id for m in newest.snapshot()] == [
        f"burst_{i}" for i in range(1, STATS_HISTORY_DEPTH + 1)]


def test_color_mask_and_overlay_only_computed_while_subscribed(ros, monkeypatch):
    calls = {"colorize": 0, "overlay": 0}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(node_module, "colorize", spy("colorize", node_module.colorize))
    monkeypatch.setattr(node_module, "overlay", spy("overlay", node_module.overlay))
    node = ros.start_node()
    t = Topics(ros, node)
    img = flat_and_textured(128, 256, seed=4)
    t.send(image_msg(img, "a"))
    assert calls == {"colorize": 0, "overlay": 0}

    color = ros.inbox(Image, t.base + "segmentation/color_mask")
    wait_until(lambda: node.count_subscribers(t.base + "segmentation/color_mask") > 0)
    t.send(image_msg(img, "b"))
    c = color.frame("b")
    labels = pixels(t.mask.frame("b"))
    assert c.encoding == "rgb8" and same_header(c.header, t.mask.frame("b").header)
    np.testing.assert_array_equal(pixels(c), np.array(CITYSCAPES_PALETTE, np.uint8)[labels])
    assert calls["overlay"] == 0, "overlay computed without a subscriber"

    over = ros.inbox(Image, t.base + "segmentation/overlay")
    wait_until(lambda: node.count_subscribers(t.base + "segmentation/overlay") > 0)
    t.send(image_msg(img, "c"))
    o = pixels(over.frame("c"))
    col = pixels(color.frame("c")).astype(int)
    assert np.abs(o - (0.5 * img + 0.5 * col)).max() <= 1  # default overlay_alpha 0.5
    # overlay_alpha is dynamic
    assert ros.set_parameters(node.get_fully_qualified_name(), overlay_alpha=1.0)[0].successful
    t.send(image_msg(img, "d"))
    np.testing.assert_array_equal(pixels(over.frame("d")), pixels(color.frame("d")))
    assert ros.set_parameters(node.get_fully_qualified_name(), overlay_alpha=0.0)[0].successful
    t.send(image_msg(img, "e"))
    np.testing.assert_array_equal(pixels(over.frame("e")), img)


# -- parameters --------------------------------------------------------------------------------

def test_tau_and_adaptive_through_set_parameters(ros):
    node = ros.start_node()
    name = node.get_fully_qualified_name()
    t = Topics(ros, node)
    img = graded_texture()
    seen = {}
    for i, tau in enumerate((0.0, 0.3, 1.5, TAU_MAX)):
        result = ros.set_parameters(name, tau=tau)
        assert result[0].successful, result[0].reason
        v = t.send(image_msg(img, f"tau{i}"))  # published after the change: must use it
        assert float(v["tau"]) == pytest.approx(tau)
        seen[tau] = v
    fractions = [float(seen[tau]["highres_fraction"]) for tau in (0.0, 0.3, 1.5, TAU_MAX)]
    # flat blocks never run high-res; tau above any complexity runs none high-res
    assert fractions[0] == pytest.approx(0.75) and fractions[-1] == 0.0
    assert all(a > b for a, b in zip(fractions, fractions[1:])), fractions
    gmacs = [float(seen[tau]["gmacs_effective"]) for tau in (0.0, 0.3, 1.5, TAU_MAX)]
    dense = float(seen[0.0]["gmacs_dense"])
    assert all(a > b for a, b in zip(gmacs, gmacs[1:])) and gmacs[0] < dense
    assert gmacs[-1] < 0.5 * dense

    # adaptive: false -> the dense network (every block high-res, effective == dense)
    assert ros.set_parameters(name, adaptive=False)[0].successful
    v = t.send(image_msg(img, "dense"))
    assert v["adaptive"] == "false" and float(v["highres_fraction"]) == 1.0
    assert float(v["gmacs_effective"]) == pytest.approx(float(v["gmacs_dense"]))
    assert ros.set_parameters(name, adaptive=True)[0].successful
    v = t.send(image_msg(img, "adaptive_again"))
    assert v["adaptive"] == "true" and float(v["highres_fraction"]) == 0.0  # tau still TAU_MAX


def test_invalid_parameter_values_are_rejected_with_a_reason(ros):
    node = ros.start_node(tau=0.25)
    name = node.get_fully_qualified_name()
    for bad in (-0.1, math.nan, math.inf, -math.inf, 1e9):
        result = ros.set_parameters(name, tau=bad)[0]
        assert not result.successful, bad
        assert "tau" in result.reason, result.reason
    result = ros.set_parameters(name, tau="0.5")[0]  # wrong type
    assert not result.successful and result.reason
    for param, value in (("overlay_alpha", 1.5), ("overlay_alpha", math.nan),
                         ("batch_window_ms", -1.0)):
        result = ros.set_parameters(name, **{param: value})[0]
        assert not result.successful and param in result.reason
    for param, value in (("model", "swiftnet_rn50"), ("device", "cpu"), ("block_size", 128),
                         ("checkpoint", "other.pt"), ("cameras", ["x"])):
        result = ros.set_parameters(name, **{param: value})[0]
        assert not result.successful and "read-only" in result.reason, (param, result.reason)
    assert ros.get_parameters(name, ["tau", "overlay_alpha"]) == {"tau": 0.25, "overlay_alpha": 0.5}
    # a valid value still goes through and reaches the next frame
    assert ros.set_parameters(name, tau=0.45)[0].successful
    assert ros.get_parameters(name, ["tau"]) == {"tau": 0.45}
    t = Topics(ros, node)
    assert float(t.send(image_msg(flat_and_textured(), "x"))["tau"]) == pytest.approx(0.45)


def test_parameter_descriptors(ros):
    node = ros.start_node()
    desc = {d.name: d for d in node.describe_parameters(
        ["tau", "adaptive", "overlay_alpha", "model", "checkpoint", "num_classes", "class_names",
         "palette", "device", "precision", "fast_path", "dense_above", "cudnn_benchmark_limit", "warmup_sizes",
         "block_size",
         "input_transport", "cameras", "qos_reliability", "max_image_pixels"])}
    for n, d in desc.items():
        assert d.description, n
        assert d.read_only == (n not in ("tau", "adaptive", "overlay_alpha")), n
    assert desc["tau"].floating_point_range[0].from_value == 0.0
    assert desc["overlay_alpha"].floating_point_range[0].to_value == 1.0
    assert desc["num_classes"].integer_range[0].to_value == 255
    assert desc["cudnn_benchmark_limit"].integer_range[0].from_value == 0
    assert "swiftnet_rn50" in desc["model"].additional_constraints


@pytest.mark.parametrize("params,needle", [
    ({"checkpoint": "/nonexistent/weights.pt"}, "does not exist"),
    ({"tau": -1.0}, "tau"),
    ({"model": "resnet152"}, "model"),
    ({"device": "tpu"}, "device"),
    ({"precision": "fp16"}, "fp16 needs a CUDA device"),
    ({"input_transport": "theora"}, "input_transport"),
    ({"cameras": ["front", "front"]}, "unique"),
    ({"class_names": ["a", "b"]}, "class_names has 2 entries"),
    ({"palette": [1, 2]}, "palette"),
    ({"dense_above": "sometimes"}, "dense_above"),
    ({"cudnn_benchmark_limit": -1}, "cudnn_benchmark_limit"),
    ({"warmup_sizes": ["2048 by 1024"]}, "warmup_sizes"),
    ({"warmup_sizes": ["64x64x0"]}, "warmup_sizes"),
    ({"warmup_sizes": ["4096x4096"], "max_image_pixels": 1000}, "max_image_pixels"),
])
def test_start_up_errors_say_what_to_do(ros, params, needle):
    with pytest.raises(StartupError) as info:
        ros.start_node(**params)
    assert needle in str(info.value)


def test_mismatched_checkpoint_stops_start_up(ros, tmp_path):
    import torch

    from segblocks_core.checkpoint import save_checkpoint
    from segblocks_core.models import build_model

    path = tmp_path / "five_classes.pt"
    save_checkpoint(str(path), build_model("swiftnet_rn18", 5), "swiftnet_rn18", 5)
    with pytest.raises(StartupError) as info:
        ros.start_node(checkpoint=str(path))
    assert "num_classes" in str(info.value) and "5" in str(info.value)
    # a plain state_dict of something else
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(StartupError) as info:
        ros.start_node(checkpoint=str(tmp_path / "other.pt"))
    assert "does not match" in str(info.value)
    # the right checkpoint loads
    ok = ros.start_node(checkpoint=str(path), num_classes=5)
    assert ok.engine.checkpoint == str(path)


def test_cuda_without_gpu_stops_start_up(ros):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(StartupError) as info:
        ros.start_node(device="cuda")
    assert "no CUDA GPU" in str(info.value) and "'cpu'" in str(info.value)


def test_empty_yaml_list_for_cameras_means_one_unprefixed_camera(ros):
    # `cameras: []` in YAML reaches the node as an unset parameter (empty lists have no type)
    node = ros.start_node(cameras=None)
    t = Topics(ros, node)
    v = t.send(image_msg(flat_and_textured(), "unset_cameras"))
    assert v["camera"] == "" and int(v["frames_processed"]) == 1


def test_camera_encodings_are_accepted(ros):
    from test_image_codec import encode_bayer, encode_simple, encode_yuv422, make_msg

    node = ros.start_node()
    t = Topics(ros, node)
    img = flat_and_textured(64, 128, seed=9)
    grey = np.repeat(img[..., :1], 3, axis=2)
    cases = {
        "bgr8": make_msg(encode_simple(img, "bgr8"), "bgr8", pad=4),
        "rgba8": make_msg(encode_simple(img, "rgba8"), "rgba8"),
        "bgra8": make_msg(encode_simple(img, "bgra8"), "bgra8"),
        "mono8": make_msg(encode_simple(grey, "mono8"), "mono8"),
        "yuv422": make_msg(encode_yuv422(img, uyvy=True), "yuv422"),
        "yuv422_yuy2": make_msg(encode_yuv422(img, uyvy=False), "yuv422_yuy2"),
        "bayer_grbg8": make_msg(encode_bayer(img, "grbg"), "bayer_grbg8"),
    }
    for encoding, msg in cases.items():
        msg.header.frame_id = encoding
        v = t.send(msg)
        assert pixels(t.mask.frame(encoding)).shape == (64, 128), encoding
        # the flat half stays flat after decoding: exactly half the blocks are high-res
        assert float(v["highres_fraction"]) == pytest.approx(0.5), encoding
    assert node.frame_counters()[""]["frames_rejected"] == 0
    # lossless encodings give the mask of the RGB image itself
    np.testing.assert_array_equal(pixels(t.mask.frame("bgr8")), node.engine.infer(img).labels[0])


# -- malformed input ---------------------------------------------------------------------------

def bad_frames():
    good = flat_and_textured(64, 128)
    raw = good.tobytes()
    return {
        "unknown_encoding": Image(height=64, width=128, encoding="32FC1", step=512, data=bytes(64 * 512)),
        "step_too_small": Image(height=64, width=128, encoding="rgb8", step=100, data=raw[:6400]),
        "data_size_mismatch": Image(height=64, width=128, encoding="rgb8", step=384, data=raw[:-1]),
        "empty": Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "absurdly_large": Image(height=200000, width=300000, encoding="rgb8", step=900000, data=raw),
    }


def test_malformed_frames_are_rejected_and_the_next_good_frame_processed(ros):
    # reliable input QoS so that every frame of this test is delivered exactly once
    node = ros.start_node(qos_reliability="reliable")
    t = Topics(ros, node)
    health = ros.inbox(DiagnosticArray, "/diagnostics")
    good = flat_and_textured(64, 128)
    for k, (kind, bad) in enumerate(bad_frames().items(), start=1):
        bad.header.frame_id = f"bad_{kind}"
        t.pub.publish(bad)
        wait_until(lambda: node.frame_counters()[""]["frames_rejected"] == k, 10, f"{kind} rejected")
        v = t.send(image_msg(good, f"good_after_{kind}"), republish_every=None)
        assert int(v["frames_rejected"]) == k and accounting_holds(v)
    assert int(v["frames_processed"]) == 5 and int(v["frames_dropped"]) == 0
    assert not any(m.header.frame_id.startswith("bad") for m in t.mask.snapshot())
    # node health reports the rejections
    me = f"{node.get_fully_qualified_name()}: health"
    warn = health.wait_for(lambda m: m.status[0].name == me and m.status[0].level == DiagnosticStatus.WARN,
                           timeout=5)
    assert "rejected" in warn.status[0].message


def test_health_on_diagnostics_about_once_a_second(ros):
    node = ros.start_node()
    health = ros.inbox(DiagnosticArray, "/diagnostics")
    me = f"{node.get_fully_qualified_name()}: health"
    ours = lambda: [m for m in health.snapshot() if m.status[0].name == me]  # noqa: E731
    wait_until(lambda: len(ours()) >= 5, 10, "5 health messages")
    msgs = ours()
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs]
    gaps = np.diff(stamps)
    # a 1 s timer: single periods jitter on a loaded machine, their mean does not
    assert 0.8 < np.mean(gaps) < 1.3 and np.all(gaps > 0.3), gaps
    values = {kv.key: kv.value for kv in msgs[-1].status[0].values}
    for key in ("model", "device", "checkpoint", "tau", "adaptive", "frames_received",
                "frames_processed", "frames_dropped", "frames_rejected", "input_topics"):
        assert key in values
    assert values["checkpoint"] == "RANDOM WEIGHTS"
    assert values["input_topics"] == f"{node.get_namespace()}/image"


# -- compressed input --------------------------------------------------------------------------

def compressed(rgb, fmt, frame_id):
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt)
    msg = CompressedImage(format=fmt.lower(), data=buf.getvalue())
    msg.header.frame_id = frame_id
    msg.header.stamp.sec = 42
    return msg


def test_compressed_input(ros):
    node = ros.start_node(input_transport="compressed", qos_reliability="reliable")
    t = Topics(ros, node, compressed=True)
    assert node.count_subscribers(t.base + "image") == 0
    img = flat_and_textured(128, 256, seed=7)
    png = compressed(img, "PNG", "png_frame")
    v = t.send(png)
    mask = t.mask.frame("png_frame")
    assert same_header(mask.header, png.header)
    np.testing.assert_array_equal(pixels(mask), node.engine.infer(img, tau=0.3).labels[0])
    assert float(v["highres_fraction"]) == pytest.approx(0.5)

    jpg = compressed(img, "JPEG", "jpeg_frame")
    t.send(jpg)
    assert pixels(t.mask.frame("jpeg_frame")).shape == (128, 256)

    corrupt = CompressedImage(format="jpeg", data=bytes(jpg.data)[:100])
    corrupt.header.frame_id = "corrupt"
    t.pub.publish(corrupt)
    wait_until(lambda: node.frame_counters()[""]["frames_rejected"] == 1, 10, "corrupt rejected")
    v = t.send(compressed(img, "PNG", "after_corrupt"), republish_every=None)
    assert int(v["frames_rejected"]) == 1 and accounting_holds(v)


# -- multi-camera ------------------------------------------------------------------------------

def test_two_cameras_are_batched_and_keep_their_headers(ros):
    node = ros.start_node(cameras=["front", "left"])
    front, left = Topics(ros, node, "front"), Topics(ros, node, "left")
    front_img = flat_and_textured(128, 256, seed=1)        # half the blocks high-res
    left_img = np.full((128, 256, 3), 90, np.uint8)        # flat: no block high-res
    batch_sizes = []
    for i in range(4):
        fm, lm = image_msg(front_img, f"front_{i}"), image_msg(left_img, f"left_{i}")
        lm.header.stamp.nanosec = (fm.header.stamp.nanosec + 1000) % 10**9  # distinct stamps
        front.pub.publish(fm)
        left.pub.publish(lm)
        fs = stats_values(front.stats.frame(f"front_{i}"))
        ls = stats_values(left.stats.frame(f"left_{i}"))
        assert same_header(front.mask.frame(f"front_{i}").header, fm.header)
        assert same_header(left.mask.frame(f"left_{i}").header, lm.header)
        assert (fs["camera"], ls["camera"]) == ("front", "left")
        assert float(fs["highres_fraction"]) == pytest.approx(0.5)
        assert float(ls["highres_fraction"]) == 0.0
        batch_sizes.append((int(fs["batch_size"]), int(ls["batch_size"])))
    # once both cameras stream, their frames share one inference call
    assert batch_sizes[1:] == [(2, 2)] * 3, batch_sizes
    np.testing.assert_array_equal(pixels(left.mask.frame("left_3")),
                                  node.engine.infer(left_img, tau=0.3).labels[0])

    # different sizes cannot share a batch: each is processed on its own
    small = flat_and_textured(64, 128, seed=2)
    front.pub.publish(image_msg(front_img, "front_big"))
    left.pub.publish(image_msg(small, "left_small"))
    assert int(stats_values(front.stats.frame("front_big"))["batch_size"]) == 1
    ls = stats_values(left.stats.frame("left_small"))
    assert int(ls["batch_size"]) == 1 and (int(ls["width"]), int(ls["height"])) == (128, 64)
    assert pixels(left.mask.frame("left_small")).shape == (64, 128)


# -- frame accounting under load ---------------------------------------------------------------

def test_frame_accounting_30hz_with_slow_inference(ros, quiet_gc):
    """A 30 Hz camera, inference several times slower than that (512x1024 noise on CPU):
    the node must drop stale frames, always process the newest one, count every frame,
    and keep answering parameter requests while the model runs."""
    node = ros.start_node()
    name = node.get_fully_qualified_name()
    t = Topics(ros, node)
    rng = np.random.default_rng(0)
    frames = [image_msg(rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8), "warmup")]
    t.send(frames[0], timeout=60)  # first call builds the execution plan
    frames = [image_msg(rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8), f"n{i}")
              for i in range(3)]
    n_frames = 90
    published = []
    stop = threading.Event()

    def camera():
        start = time.monotonic()
        for i in range(n_frames):
            msg = frames[i % 3]
            msg.header.frame_id = f"n{i}"
            t.pub.publish(msg)
            published.append(msg.header.frame_id)
            time.sleep(max(0.0, start + (i + 1) / 30.0 - time.monotonic()))
        stop.set()

    base = node.frame_counters()[""]
    thread = threading.Thread(target=camera)
    thread.start()
    service_times = []
    while not stop.is_set():
        t0 = time.monotonic()
        assert ros.set_parameters(name, tau=0.3 + 0.01 * (len(service_times) % 2))[0].successful
        service_times.append(time.monotonic() - t0)
        time.sleep(0.1)
    thread.join()
    last = f"n{n_frames - 1}"
    t.stats.frame(last, timeout=30)  # the newest frame is always processed
    wait_until(lambda: node.frame_counters()[""]["frames_pending"] == 0, 10, "the node to drain")

    c = node.frame_counters()[""]
    received = c["frames_received"] - base["frames_received"]
    processed = c["frames_processed"] - base["frames_processed"]
    dropped = c["frames_dropped"] - base["frames_dropped"]
    assert c["frames_received"] == c["frames_processed"] + c["frames_dropped"] + c["frames_rejected"]
    assert c["frames_rejected"] == 0
    assert received <= n_frames and received >= n_frames // 2, received
    stats = [stats_values(m) for m in t.stats.snapshot()]
    run = [v for v in stats if v["camera"] == "" and int(v["frames_received"]) > base["frames_received"]]
    inference_s = np.median([float(v["total_ms"]) for v in run]) / 1e3
    assert inference_s > 3 / 30.0, "inference is not slow enough for this test"
    assert 2 <= processed <= 3.0 / inference_s + 2, (processed, inference_s)
    assert dropped >= n_frames // 2 - processed
    assert all(accounting_holds(v) for v in stats)
    # newest-first: processed frames are in publishing order, and none waited for more
    # than the inference in progress plus its own
    ids = [int(m.header.frame_id[1:]) for m in t.stats.snapshot() if m.header.frame_id.startswith("n")]
    assert ids == sorted(ids) and ids[-1] == n_frames - 1
    worst = max(float(v["total_ms"]) for v in run)
    assert max(float(v["latency_ms"]) for v in run) < 2 * worst + 250
    # the parameter service answered while the model ran: a service queued behind the
    # inference would wait for the rest of it (half an inference on average). One call may
    # hit a stall of the machine (CI has stalled a process for 1.5 s), so the bounds are on
    # the median and on every call but the slowest
    assert len(service_times) >= 10
    ordered = sorted(service_times)
    assert ordered[len(ordered) // 2] < min(0.25, inference_s / 4), (ordered, inference_s)
    assert ordered[-2] < min(0.5, inference_s), (ordered, inference_s)


def test_dense_above_parameter_is_parsed_and_reaches_the_engine(ros):
    from segblocks_ros.node import StartupError, parse_dense_above
    assert parse_dense_above("auto") == "auto" and parse_dense_above(" OFF ") is None
    assert parse_dense_above("0.6") == 0.6 and parse_dense_above("1") == 1.0
    for bad in ("1.5", "-0.1", "nan", "sometimes", ""):
        with pytest.raises(StartupError, match="dense_above"):
            parse_dense_above(bad)
    node = ros.start_node(dense_above="0.7")
    assert node._engine.dense_above == 0.7


def test_warmup_sizes_are_parsed():
    from segblocks_ros.node import MAX_WARMUP_BATCH, parse_warmup_sizes
    assert parse_warmup_sizes([""], 10**7) == []
    assert parse_warmup_sizes(["2048x1024", " 640 X 480 x 2 ", "", "2048x1024x1"], 10**7) == [
        (2048, 1024, 1), (640, 480, 2)]
    for bad in ("2048", "2048x", "x1024", "2048x1024x", "0x10", "10x0", f"8x8x{MAX_WARMUP_BATCH + 1}", "-8x8",
                "8.5x8", "8x8x8x8"):
        with pytest.raises(StartupError, match="warmup_sizes"):
            parse_warmup_sizes([bad], 10**7)
    with pytest.raises(StartupError, match="max_image_pixels"):
        parse_warmup_sizes(["101x100"], 10_000)


def test_warmup_without_the_fast_path_does_nothing_and_the_node_serves(ros):
    """On the CPU there are no graphs to capture: the warm-up says so, ends, and frames are
    served as without it."""
    node = ros.start_node(warmup_sizes=["64x32", "128x64x2"])
    assert node._warmup_sizes == [(64, 32, 1), (128, 64, 2)]
    assert node.engine.warmup(32, 64) is False
    deadline = time.monotonic() + 10
    while node._warming_up and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not node._warming_up
    assert Topics(ros, node).send(image_msg(flat_and_textured(), "cam"))["adaptive"] == "true"


def test_cudnn_benchmark_limit_parameter_reaches_the_engine(ros):
    assert ros.start_node()._engine.cudnn_benchmark_limit == 0
    assert ros.start_node(cudnn_benchmark_limit=10)._engine.cudnn_benchmark_limit == 10


@pytest.mark.parametrize("fast_path", [True, False])
def test_fast_path_parameter_reaches_the_engine(ros, fast_path):
    """fast_path: true means 'where possible': on the CPU the node starts and runs eagerly
    (asking the engine for graphs outright would stop it: no CUDA device)."""
    node = ros.start_node(fast_path=fast_path)
    assert node.get_parameter("fast_path").value is fast_path
    assert node._engine.fast_path is False
    assert Topics(ros, node).send(image_msg(flat_and_textured(), "cam"))["adaptive"] == "true"
