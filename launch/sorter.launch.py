"""Launch the ``sorter`` lifecycle node with the package's parameter file.

    ros2 launch mmsag_ros sorter.launch.py bundle:=/opt/models/mmsag_effl0_224 \
        camera_topics:=/camera/image_raw
    ros2 launch mmsag_ros sorter.launch.py bundle:=... compressed:=true \
        camera_topics:=/cam_left/image_raw/compressed,/cam_right/image_raw/compressed
    ros2 launch mmsag_ros sorter.launch.py namespace:=cell_2 bundle:=... \
        camera_topics:=/cell_2/camera/image_raw          # a second cell beside the first
    ros2 launch mmsag_ros sorter.launch.py bundle:=... precision:=int8   # a bundle variant
    ros2 launch mmsag_ros sorter.launch.py bundle:=... device:=cuda backend:=tensorrt \
        precision:=fp16                                   # the engine built for this GPU
    ros2 launch mmsag_ros sorter.launch.py bundle:=... autostart:=false  # a lifecycle manager

``config/sorter.yaml`` (or ``params_file:=``) holds every default; an argument left empty
keeps the parameter file's value, so only what differs per cell is given here. ``compressed``
empty keeps the file's ``input_type``; ``true``/``false`` override it.

Names: the node runs as ``<namespace>/sorter`` and its topics are relative names, so they follow
the namespace (default ``waste``): labels on ``/waste/labels``, the optional debug overlay
(``debug_image: true`` in the parameter file) on ``/waste/debug_image``, a relative camera
topic ``image`` on ``/waste/image``. With ``namespace:=cell_2`` each becomes ``/cell_2/...``;
nothing is remapped to an absolute name, so several cells never share an output topic.
``/diagnostics`` is absolute, as every ROS monitor expects. ``use_sim_time:=true`` makes the node
follow ``/clock`` (a simulation, or ``mmsag bag play --clock``).

The parameter file sets ``autostart: true``; ``autostart:=false`` leaves the node unconfigured
for a lifecycle manager to drive. The decisions above are made by
:mod:`mmsag_ros.ros.launch_args` (tested without ``launch``); this file only reads the arguments.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

from mmsag_ros.ros.launch_args import sorter_settings

__all__ = ["generate_launch_description"]

# The arguments handed to sorter_settings as strings.
_SETTINGS_ARGUMENTS = (
    "namespace",
    "bundle",
    "camera_topics",
    "compressed",
    "precision",
    "device",
    "backend",
    "autostart",
    "debug_image",
    "use_sim_time",
)


def _sorter(context: LaunchContext) -> list[LifecycleNode]:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    settings = sorter_settings({name: arg(name) for name in _SETTINGS_ARGUMENTS})
    return [
        LifecycleNode(
            package="mmsag_ros",
            executable="sorter",
            name="sorter",
            namespace=settings.namespace,
            # Later entries win: the argument overrides go after the parameter file.
            parameters=[arg("params_file"), settings.overrides],
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
                "namespace",
                default_value="waste",  # mmsag_ros.ros.launch_args.DEFAULT_NAMESPACE
                description=(
                    "Namespace of the sorter node and its relative topics: labels on "
                    "/<namespace>/labels (empty: the root namespace)"
                ),
            ),
            DeclareLaunchArgument(
                "camera_topics",
                default_value="",
                description="Comma-separated camera topics (empty: the parameter file's)",
            ),
            DeclareLaunchArgument(
                "compressed",
                default_value="",
                choices=["", "true", "false"],
                description=(
                    "true: sensor_msgs/CompressedImage, false: sensor_msgs/Image "
                    "(empty: the parameter file's input_type)"
                ),
            ),
            DeclareLaunchArgument(
                "precision",
                default_value="",
                choices=["", "fp32", "fp16", "int8"],
                description=(
                    "Bundle variant to run: fp32, fp16 or int8 (empty: the parameter file's)"
                ),
            ),
            DeclareLaunchArgument(
                "device",
                default_value="",
                description="cpu, cuda, cuda:N or auto (empty: the parameter file's)",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                choices=["", "auto", "tensorrt", "onnxruntime", "torch"],
                description="Inference backend (empty: the parameter file's)",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="",
                choices=["", "true", "false"],
                description=(
                    "Configure and activate at start; false for a lifecycle manager "
                    "(empty: the parameter file's)"
                ),
            ),
            DeclareLaunchArgument(
                "debug_image",
                default_value="",
                choices=["", "true", "false"],
                description=(
                    "Publish frames with scores and attention drawn on debug_image "
                    "(empty: the parameter file's)"
                ),
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                choices=["true", "false"],
                description="Use the /clock topic as the node's time (simulation, bag replay)",
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
