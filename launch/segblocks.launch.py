"""Launch the SegBlocks segmentation node.

    ros2 launch segblocks_ros segblocks.launch.py image_topic:=/camera/image_raw tau:=0.4
    ros2 launch segblocks_ros segblocks.launch.py namespace:=front \\
        image_topic:=/front/image_raw input_transport:=compressed
    ros2 launch segblocks_ros segblocks.launch.py params_file:=/path/to/my_segblocks.yaml

Parameters come from ``params_file`` (default: ``config/segblocks.yaml`` of the installed
package); the ``tau``, ``device`` and ``input_transport`` arguments override it when given.
``image_topic`` is the camera's base topic, remapped onto the node's ``image`` input
(and ``<image_topic>/compressed``, as image_transport names it, onto ``image/compressed``
for ``input_transport:=compressed``). The outputs are
``segmentation/{mask,color_mask,overlay,block_map,stats}`` in ``namespace``.
With several ``cameras`` in the parameter file, leave ``image_topic`` empty and remap
``<camera>/image`` in your own launch file instead.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def node_configuration(args):
    """Parameter overrides and remappings from the launch arguments (plain strings).

    An empty ``tau``, ``device`` or ``input_transport`` keeps the parameter file's value.
    ``image_topic`` is the camera's base topic in image_transport style: raw frames on it,
    compressed frames on ``<image_topic>/compressed``.
    """
    overrides = {"use_sim_time": args["use_sim_time"].strip().lower() in ("true", "1")}
    if args["tau"].strip():
        overrides["tau"] = float(args["tau"])
    for name in ("device", "input_transport"):
        if args[name].strip():
            overrides[name] = args[name].strip()
    remappings = []
    topic = args["image_topic"].strip()
    if topic:
        remappings = [("image", topic), ("image/compressed", topic.rstrip("/") + "/compressed")]
    return overrides, remappings


def _node(context):
    names = ("namespace", "image_topic", "params_file", "tau", "device", "input_transport",
             "use_sim_time")
    args = {name: LaunchConfiguration(name).perform(context) for name in names}
    overrides, remappings = node_configuration(args)
    return [Node(
        package="segblocks_ros",
        executable="segblocks_node",
        name="segblocks",
        namespace=args["namespace"],
        parameters=[args["params_file"], overrides],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("segblocks_ros"), "config",
                                  "segblocks.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its topics."),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera base topic, remapped onto the node's "
                                          "'image' input (and <image_topic>/compressed onto "
                                          "'image/compressed'); empty: no remapping."),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's parameters "
                                          "(segblocks: ros__parameters: ...)."),
        DeclareLaunchArgument("tau", default_value="",
                              description="Complexity threshold (finite, >= 0); empty: the "
                                          "params_file value. Change it at run time with "
                                          "'ros2 param set /segblocks tau 0.4'."),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cpu | cuda | cuda:N; empty: the params_file "
                                          "value."),
        DeclareLaunchArgument("input_transport", default_value="",
                              description="raw | compressed; empty: the params_file value."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay) instead of the wall clock."),
        OpaqueFunction(function=_node),
    ])
