"""Type aliases shared across the package."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

PathLike: TypeAlias = str | os.PathLike[str]
SpatialShape: TypeAlias = Sequence[int]
Spacing: TypeAlias = Sequence[float]
#: A MONAI layer spec: a name ("group") or a (name, kwargs) pair (("group", {"num_groups": 4})).
LayerSpec: TypeAlias = str | tuple[str, dict[str, Any]] | list[Any]
Reduction: TypeAlias = Literal["mean", "sum", "none"]
