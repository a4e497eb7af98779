"""ROS 2 side of SegBlocks: the segmentation node, image conversion and bag tools.

Everything here is a thin adapter over :mod:`segblocks_core`, which never imports rclpy.
"""
