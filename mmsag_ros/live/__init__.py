"""Driving a live sorter node: bags played over DDS, replays through a node process, scored.

The layer above both :mod:`mmsag_ros.ros` (the node) and :mod:`mmsag_ros.bag` (bags, no ROS):
:mod:`~mmsag_ros.live.play` publishes a bag's frames with their recorded timing,
:mod:`~mmsag_ros.live.replay` starts a sorter process and collects its labels, and
:mod:`~mmsag_ros.live.live_eval` scores them against the bag's ground truth. Import them
directly; this package imports nothing on its own.
"""
