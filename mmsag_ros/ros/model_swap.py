"""The sorter's models: building one from its parameters, and swapping it without a stop.

:func:`build_classifier` is how configure and a swap alike load, check and warm up a model.
:class:`ModelSwap` keeps the node's swaps: at most one loading at a time, on a thread of its
own while the running model keeps labelling, with its outcome for ``/diagnostics``. The node
hands the loaded model over on its executor thread (see :meth:`SorterNode.swap_bundle
<mmsag_ros.ros.sorter_node.SorterNode.swap_bundle>`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import MmsagError
from mmsag_ros.ros.params import SorterParams, backend_options, resolve_thresholds
from mmsag_ros.runtime.classifier import Classifier
from mmsag_ros.runtime.drift import DriftWatch

__all__ = [
    "Loading",
    "ModelSwap",
    "build_classifier",
    "drift_status",
    "drift_watch",
    "failure_reason",
]


def failure_reason(err: BaseException) -> str:
    """One line for a log or ``/diagnostics``: our errors say it all, others name their type."""
    return str(err) if isinstance(err, MmsagError) else f"{type(err).__name__}: {err}"


def build_classifier(params: SorterParams) -> Classifier:
    """Load, check and warm up the classifier ``params`` describe (slow: seconds)."""
    classifier = Classifier(
        params.bundle,
        backend=params.backend,
        device=params.device,
        precision=params.precision,
        max_batch=params.max_batch,
        backend_options=backend_options(params),
        max_instances=params.max_instances,
        instance_min_relative=params.instance_min_relative,
    )
    try:
        classifier.set_thresholds(resolve_thresholds(params, classifier.bundle.thresholds))
        classifier.warmup(min(len(params.camera_topics), params.max_batch))
    except BaseException:
        classifier.close()
        raise
    return classifier


def drift_watch(params: SorterParams, classifier: Classifier) -> DriftWatch | None:
    """The drift watch of ``classifier``'s model; None when off or without reference."""
    reference = classifier.bundle.reference
    if params.drift_factor == 0.0 or reference is None:
        return None
    return DriftWatch(
        reference,
        classifier.labels.display_names,
        model_id=classifier.model_id,
        window=params.drift_window,
        factor=params.drift_factor,
    )


def drift_status(
    params: SorterParams | None, classifier: Classifier | None, drift: DriftWatch | None
) -> tuple[str, str]:
    """``(window, findings)`` for diagnostics: how full the window is, what moved."""
    if params is None or classifier is None:
        return "", ""
    if params.drift_factor == 0.0:
        return "off (drift_factor 0)", ""
    if drift is None:
        return "off: the bundle has no reference statistics (export it with --val-data)", ""
    report = drift.report()
    return f"{report.frames}/{report.window} frames", report.describe()


@dataclass
class Loading:
    """A model swap under way: the bundle being loaded in the background, and its outcome."""

    bundle: str
    previous: str
    started_s: float
    classifier: Classifier | None = None
    error: str = ""
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        """Whether the load has ended, with a model or an error."""
        return self.classifier is not None or bool(self.error)


class ModelSwap:
    """The node's model swaps: one loading at a time, the last failure, how many took over.

    Args:
        loaded: Called from the loading thread when a load ends (the node triggers a guard
            condition, so that the hand-over runs on its executor thread). If it raises, the
            node is gone and the loaded model is closed.
    """

    def __init__(self, loaded: Callable[[], None]) -> None:
        self._loaded = loaded
        self._loading: Loading | None = None
        self.error = ""  # the last failed swap's reason, until a model loads again
        self.swaps = 0

    @property
    def pending(self) -> bool:
        """Whether a swap is loading (or loaded and not yet handed over)."""
        return self._loading is not None

    def describe(self) -> str:
        """``loading <bundle> for <s> s`` while a swap loads, else empty (for diagnostics)."""
        loading = self._loading
        if loading is None:
            return ""
        return f"loading {loading.bundle} for {time.monotonic() - loading.started_s:.1f} s"

    def check(self, bundle: str, classifier: Classifier | None) -> bool:
        """Whether to load ``bundle`` (not the running one); MmsagError if the swap cannot work.

        Quick, since the executor waits on it: a swap that is refused is refused here.
        """
        if self._loading is not None:
            raise MmsagError(
                f"a model swap to {self._loading.bundle} is still loading; set bundle again "
                "once /diagnostics reports it done"
            )
        if classifier is None:
            raise MmsagError("the sorter has no model to swap (a stuck batch released it)")
        # No hashing here: reading the model files is the background load's work.
        candidate = load_bundle(Path(bundle), verify=False)
        running, offered = list(classifier.labels.names), list(candidate.labels.names)
        if offered != running:
            raise MmsagError(
                f"bundle {bundle} labels {offered}, the running model {running}: a swap keeps "
                "the classes and their order; for other classes deactivate, clean up, set "
                "bundle and configure"
            )
        running_here = Path(bundle).resolve() == Path(classifier.bundle.root).resolve()
        return not (running_here and candidate.model_id == classifier.bundle.model_id)

    def start(self, params: SorterParams, previous: str) -> Loading:
        """Load ``params.bundle`` on a thread of its own; ``previous`` is the running bundle."""
        loading = Loading(bundle=params.bundle, previous=previous, started_s=time.monotonic())
        self._loading = loading
        threading.Thread(
            target=self._load, args=(loading, params), name="sorter-swap", daemon=True
        ).start()
        return loading

    def _load(self, loading: Loading, params: SorterParams) -> None:
        try:
            loading.classifier = build_classifier(params)
        except Exception as err:
            loading.error = failure_reason(err)
        try:
            self._loaded()
        except Exception:  # the node went away meanwhile; so did everything to swap
            if loading.classifier is not None:
                loading.classifier.close()

    def cancel(self) -> None:
        """The node released its model: a loading swap's model is closed when it ends."""
        if self._loading is not None:
            self._loading.cancelled = True

    def take_finished(self) -> Loading | None:
        """The swap whose load has ended, now off the books; None while loading or idle.

        A cancelled swap's model is closed here and None returned.
        """
        loading = self._loading
        if loading is None or not loading.finished:
            return None
        self._loading = None
        if loading.cancelled:
            if loading.classifier is not None:
                loading.classifier.close()
            return None
        return loading

    def settle(self, loading: Loading, params: SorterParams | None) -> Classifier | None:
        """The model of a finished ``loading``, ready to take over under ``params``; or None.

        None when the load failed (:attr:`error` says why) or the node has released its model
        meanwhile (``params`` None: the loaded one is closed). The thresholds in force now
        decide, since they may have changed while it loaded.
        """
        new = loading.classifier
        if params is None:
            if new is not None:
                new.close()
            return None
        if new is None:
            self.error = f"swap to {loading.bundle} failed: {loading.error}"
            return None
        new.set_thresholds(resolve_thresholds(params, new.bundle.thresholds))
        self.error = ""
        self.swaps += 1
        return new
