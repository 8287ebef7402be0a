"""Rosbag reading and writing, replay and offline evaluation on recorded data."""

__all__: list[str] = []
