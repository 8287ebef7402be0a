"""Datasets, transforms, label statistics, synthetic and composed scenes.

Reading: :mod:`~mmsag_ros.data.voc` (VOC/MLKW), :mod:`~mmsag_ros.data.coco`,
:mod:`~mmsag_ros.data.csv_table`, :mod:`~mmsag_ros.data.dataset` (torch datasets) and
:mod:`~mmsag_ros.data.transforms`. Splitting and statistics:
:mod:`~mmsag_ros.data.stratified_split`, :mod:`~mmsag_ros.data.stats`. Making data: scenes
composed from real photos (:mod:`~mmsag_ros.data.compose`, ``compose_scene``, ``cutout``) and
synthetic ones (:mod:`~mmsag_ros.data.synth` and its ``synth_*`` parts), written as VOC
(:mod:`~mmsag_ros.data.voc_writer`). Import names from the module that defines them, so that
importing the package loads neither torch nor OpenCV.
"""

__all__: list[str] = []
