"""Shared helpers for the node tests: real rclpy, a private context, no launch/ros2cli.

Importing this module isolates the test session's DDS traffic (a random ROS domain,
discovery limited to this host) before any rclpy context is created, so tests can run
beside other ROS processes. Every node under test gets its own namespace as well.

The :func:`ros` fixture yields a :class:`RosHarness`: a rclpy context with a
multi-threaded executor spinning in a background thread, a helper node for test
publishers, subscribers and parameter-service clients, and a factory for
:class:`~segblocks_ros.node.SegBlocksNode` instances configured for the CPU (random
weights, small blocks).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from typing import Callable, Optional

import numpy as np
import pytest

if "SEGBLOCKS_TEST_DOMAIN_ID" in os.environ:
    os.environ["ROS_DOMAIN_ID"] = os.environ["SEGBLOCKS_TEST_DOMAIN_ID"]
else:
    os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid() ^ time.time_ns()).randint(101, 199))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the line above

import rclpy  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

#: Node defaults for tests: CPU, explicit random weights, 64-px blocks (fast, many blocks).
TEST_NODE_PARAMS = {"checkpoint": "random", "device": "cpu", "block_size": 64}
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                      reliability=ReliabilityPolicy.RELIABLE)
_NAMESPACES = itertools.count()


class Inbox:
    """Messages received on one topic, with waiting helpers."""

    def __init__(self):
        self.messages: list = []
        self._cond = threading.Condition()

    def __call__(self, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable = lambda m: True, timeout: float = 20.0):
        """First message (old or new) that satisfies ``predicate``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching message within {timeout} s "
                                         f"({len(self.messages)} received)")
                self._cond.wait(remaining)

    def frame(self, frame_id: str, timeout: float = 20.0):
        """The message whose header.frame_id is ``frame_id``."""
        return self.wait_for(lambda m: m.header.frame_id == frame_id, timeout)

    def snapshot(self) -> list:
        with self._cond:
            return list(self.messages)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def stats_values(msg) -> dict:
    """``segmentation/stats`` DiagnosticArray -> ``{key: value string}``."""
    assert len(msg.status) == 1, "stats must carry exactly one DiagnosticStatus"
    return {kv.key: kv.value for kv in msg.status[0].values}


def image_msg(rgb: np.ndarray, frame_id: str, stamp_ns: Optional[int] = None) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                step=rgb.shape[1] * 3, data=np.ascontiguousarray(rgb).tobytes())
    msg.header.frame_id = frame_id
    stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return msg


def flat_and_textured(height: int = 128, width: int = 256, seed: int = 0) -> np.ndarray:
    """RGB uint8: left half flat grey (block complexity 0), right half uniform noise."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 120, dtype=np.uint8)
    img[:, width // 2:] = rng.integers(0, 256, (height, width - width // 2, 3), dtype=np.uint8)
    return img


class RosHarness:
    """A private rclpy context spinning in the background, plus test-side endpoints."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.prefix = f"/sbt{os.getpid()}"
        self.helper = Node("segblocks_test_helper", namespace=self.prefix, context=self.context)
        self.executor.add_node(self.helper)
        self._nodes: list = []
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        for node in list(self._nodes):
            self.stop_node(node)
        self.executor.shutdown()
        self.helper.destroy_node()
        rclpy.shutdown(context=self.context)

    # -- nodes under test --------------------------------------------------------------------

    def namespace(self) -> str:
        return f"{self.prefix}_{next(_NAMESPACES)}"

    def start_node(self, **params):
        """A SegBlocksNode in a fresh namespace, spinning; ``params`` override the test
        defaults (:data:`TEST_NODE_PARAMS`) like a parameter file would."""
        from segblocks_ros.node import SegBlocksNode

        overrides = [Parameter(k, value=v) for k, v in {**TEST_NODE_PARAMS, **params}.items()]
        node = SegBlocksNode(namespace=self.namespace(), context=self.context,
                             parameter_overrides=overrides)
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def stop_node(self, node) -> None:
        self.executor.remove_node(node)
        self._nodes.remove(node)
        node.destroy_node()

    # -- endpoints ---------------------------------------------------------------------------

    def publisher(self, msg_type, topic: str, qos: QoSProfile = RELIABLE, wait_for=None):
        """A publisher on ``topic``; waits until ``wait_for`` (a node) subscribes to it."""
        pub = self.helper.create_publisher(msg_type, topic, qos)
        if wait_for is not None:
            wait_until(lambda: pub.get_subscription_count() > 0, 10.0, f"a subscriber on {topic}")
        return pub

    def inbox(self, msg_type, topic: str, qos: QoSProfile = RELIABLE) -> Inbox:
        """Collect everything published on ``topic`` (waits until a publisher is matched)."""
        inbox = Inbox()
        sub = self.helper.create_subscription(msg_type, topic, inbox, qos)
        inbox.subscription = sub
        wait_until(lambda: self.helper.count_publishers(sub.topic_name) > 0, 10.0,
                   f"a publisher on {topic}")
        return inbox

    def _call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.helper.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available")
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout):
                raise AssertionError(f"service {name} did not answer within {timeout} s")
            return future.result()
        finally:
            self.helper.destroy_client(client)

    def set_parameters(self, node_name: str, timeout: float = 10.0, **values) -> list:
        """Call ``<node>/set_parameters`` (what ``ros2 param set`` does); returns the
        ``SetParametersResult`` list."""
        request = SetParameters.Request()
        request.parameters = [ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value())
                              for k, v in values.items()]
        return self._call(SetParameters, f"{node_name}/set_parameters", request, timeout).results

    def get_parameters(self, node_name: str, names: list) -> dict:
        request = GetParameters.Request(names=list(names))
        response = self._call(GetParameters, f"{node_name}/get_parameters", request)
        return {n: _parameter_value(v) for n, v in zip(names, response.values)}


def _parameter_value(value):
    from rclpy.parameter import parameter_value_to_python

    return parameter_value_to_python(value)


@pytest.fixture(scope="module")
def ros():
    harness = RosHarness()
    yield harness
    harness.close()
