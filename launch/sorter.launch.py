"""Launch the ``sorter`` lifecycle node with the package's parameter file.

    ros2 launch mmsag_ros sorter.launch.py bundle:=/opt/models/mmsag_effl0_224 \
        camera_topics:=/camera/image_raw
    ros2 launch mmsag_ros sorter.launch.py bundle:=... compressed:=true \
        camera_topics:=/cam_left/image_raw/compressed,/cam_right/image_raw/compressed

``config/sorter.yaml`` holds every default; the arguments here only override what differs per
cell. Labels go to ``/waste/labels``, the optional debug overlay (``debug_image: true`` in the
parameter file) to ``/waste/debug_image``. The parameter file sets ``autostart: true``; set it
to false there when a lifecycle manager drives the node.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

__all__ = ["generate_launch_description"]


def _sorter(context: LaunchContext) -> list[LifecycleNode]:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides: dict[str, object] = {}
    if arg("bundle"):
        overrides["bundle"] = arg("bundle")
    topics = [t.strip() for t in arg("camera_topics").split(",") if t.strip()]
    if topics:
        overrides["camera_topics"] = topics
    overrides["input_type"] = "compressed" if arg("compressed") == "true" else "image"
    return [
        LifecycleNode(
            package="mmsag_ros",
            executable="sorter",
            name="sorter",
            namespace=arg("namespace"),
            parameters=[arg("params_file"), overrides],
            remappings=[("labels", "/waste/labels"), ("debug_image", "/waste/debug_image")],
            arguments=["--ros-args", "--log-level", arg("log_level")],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """The sorter node, its parameter file and the per-cell arguments."""
    default_params = PathJoinSubstitution([FindPackageShare("mmsag_ros"), "config", "sorter.yaml"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "bundle",
                default_value="",
                description="Exported model bundle directory (empty: the parameter file's)",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="Sorter parameter file",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the sorter node"
            ),
            DeclareLaunchArgument(
                "camera_topics",
                default_value="",
                description="Comma-separated camera topics (empty: the parameter file's)",
            ),
            DeclareLaunchArgument(
                "compressed",
                default_value="false",
                choices=["true", "false"],
                description="Subscribe to sensor_msgs/CompressedImage instead of Image",
            ),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                choices=["debug", "info", "warn", "error", "fatal"],
                description="Logging level of the sorter node",
            ),
            OpaqueFunction(function=_sorter),
        ]
    )
