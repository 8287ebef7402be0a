"""Rosbag reading and writing, replay and offline evaluation on recorded data.

Submodules: :mod:`~mmsag_ros.bag.typestore` (message definitions for rosbags),
:mod:`~mmsag_ros.bag.frames` (frames and ground truth out of a bag),
:mod:`~mmsag_ros.bag.make` (dataset split -> bag), :mod:`~mmsag_ros.bag.play` (replay with
rclpy) and :mod:`~mmsag_ros.bag.evaluate` (offline scoring). Import them directly; this package
imports nothing heavy on its own.
"""

__all__: list[str] = []
