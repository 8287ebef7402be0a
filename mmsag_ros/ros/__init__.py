"""Everything that imports rclpy: the sorter node, image conversions, QoS, diagnostics."""

__all__: list[str] = []
