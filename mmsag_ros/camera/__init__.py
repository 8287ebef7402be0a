"""Camera frames as the classifier takes them: raw encodings and compressed images decoded.

Submodules: :mod:`~mmsag_ros.camera.encodings` (raw ``sensor_msgs/Image`` encodings) and
:mod:`~mmsag_ros.camera.decode` (any camera message, with the checks that keep a hostile frame
cheap). They read messages by their fields and need no ROS: the node and the bag tools share
them.
"""
