"""The label set: class names in model order, with human-readable display names.

The order of ``names`` is the order of every per-class array in the project (targets, logits,
thresholds, message fields). It is saved with every checkpoint and bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmsag_ros.errors import DatasetError

__all__ = ["MLKW_LABELS", "LabelSet"]


@dataclass(frozen=True)
class LabelSet:
    """Class names as they appear in the data, plus display names for people.

    Attributes:
        names: Class names in model order, exactly as on disk (MLKW keeps ``galss``).
        display_names: One display name per class, same order.
    """

    names: tuple[str, ...]
    display_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise DatasetError("a label set needs at least one class")
        if len(set(self.names)) != len(self.names):
            raise DatasetError(f"duplicate class names in {list(self.names)}")
        if len(self.display_names) != len(self.names):
            raise DatasetError(
                f"{len(self.display_names)} display names for {len(self.names)} classes"
            )

    @classmethod
    def from_names(
        cls, names: Sequence[str], display_names: Mapping[str, str] | None = None
    ) -> LabelSet:
        """Build a label set; display names default to the names themselves."""
        display = display_names or {}
        return cls(tuple(names), tuple(display.get(n, n) for n in names))

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of class ``name``; DatasetError naming the known classes if unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            raise DatasetError(
                f"unknown class {name!r}; known classes: {', '.join(self.names)}"
            ) from None

    def to_dict(self) -> dict[str, list[str]]:
        """Plain data for JSON, YAML and checkpoints."""
        return {"names": list(self.names), "display_names": list(self.display_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]]) -> LabelSet:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(tuple(data["names"]), tuple(data["display_names"]))
        except KeyError as err:
            raise DatasetError(f"label set is missing the field {err}") from None


# MLKW's eight classes in the dataset's own order and spelling ("lile" is the Tetra Pak
# aseptic carton, "galss" a typo for glass kept in the file names).
MLKW_LABELS = LabelSet(
    names=("waste_bag", "metal", "shoe", "plastic", "bottle", "carton", "lile", "galss"),
    display_names=(
        "waste bag",
        "metal",
        "shoe",
        "plastic",
        "bottle",
        "carton",
        "tetra pak carton",
        "glass",
    ),
)
