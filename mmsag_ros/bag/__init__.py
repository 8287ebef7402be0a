"""Rosbag reading and writing and offline evaluation on recorded data, with rosbags, no ROS.

Submodules: :mod:`~mmsag_ros.bag.typestore` (message definitions for rosbags),
:mod:`~mmsag_ros.bag.frames` (frames and ground truth out of a bag),
:mod:`~mmsag_ros.bag.writer` (every new bag: format, storage, cleanup of a failed write),
:mod:`~mmsag_ros.bag.make` (dataset split -> bag), :mod:`~mmsag_ros.bag.bag_eval` (offline
scoring), :mod:`~mmsag_ros.bag.label` and :mod:`~mmsag_ros.bag.export_frames` (labelling).
Replaying a bag into a node is :mod:`mmsag_ros.live`'s. Import them directly; this package
imports nothing heavy on its own.
"""

__all__: list[str] = []
