"""The sorter process: one :class:`~mmsag_ros.ros.sorter_node.SorterNode` and its executor.

It runs until Ctrl-C, an external shutdown or the node's shutdown transition, and an
exception a callback raises is counted and logged while the executor spins on: one bug must
not stop a cell's labels. ``ros2 run mmsag_ros sorter`` and the launch file start it; without
them::

    python -m mmsag_ros.ros.sorter --ros-args -p bundle:=<dir> -p autostart:=true
"""

from __future__ import annotations

import time

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger

from mmsag_ros.ros.sorter_node import SorterNode

__all__ = ["main"]

# After the shutdown transition, keep spinning briefly so its service response goes out.
_SHUTDOWN_LINGER_S = 0.5


def _spin_once(executor: SingleThreadedExecutor, node: SorterNode, timeout_s: float) -> None:
    try:
        executor.spin_once(timeout_sec=timeout_s)
    except ExternalShutdownException:
        raise
    except Exception as err:  # one callback's bug must not stop the cell's labels
        node.callback_failed(err)


def main(args: list[str] | None = None) -> None:
    """Run one sorter node until Ctrl-C, an external shutdown or its shutdown transition."""
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = SorterNode()
        except ParameterException as err:  # a start-up value rclpy refuses: type or range
            get_logger("sorter").fatal(f"bad parameter: {err}")
            raise SystemExit(2) from None
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.autostart()
        while rclpy.ok() and not node.finalized:
            _spin_once(executor, node, 0.1)
        linger_until = time.monotonic() + _SHUTDOWN_LINGER_S
        while rclpy.ok() and time.monotonic() < linger_until:
            _spin_once(executor, node, 0.05)
        if node is not None and not node.finalized:
            node.get_logger().info("ROS shut down (Ctrl-C or an external shutdown); exiting")
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is not None:
            node.get_logger().info("interrupted (Ctrl-C or an external shutdown); exiting")
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
