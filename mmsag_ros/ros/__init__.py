"""Everything that imports rclpy: the sorter process and node, its camera input and worker.

Also its parameters, model swaps, diagnostics, capture ring, image conversions and QoS.
"""

__all__: list[str] = []
