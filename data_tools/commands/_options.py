"""Option parsers shared by the ``medseg-data`` conversion, check and statistics commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["label_map_arg", "parse_label_map"]


def parse_label_map(value: str) -> str | dict[str, Any]:
    """A ``MapLabels`` preset name, an inline JSON object, or a path to a JSON file with the mapping."""
    text = value.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"--label-map: invalid JSON {value!r} ({err.msg})") from err
    elif text.lower().endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"--label-map: JSON file {value!r} does not exist")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"--label-map: {value!r} is not valid JSON ({err.msg})") from err
    else:
        return text
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError(f"--label-map: expected a JSON object {{source: target}}, got {obj!r}")
    return obj


def label_map_arg(value: str) -> str | dict[int, int]:
    """``--label-map`` parser: preset names stay strings, JSON objects become ``{int: int}``."""
    parsed = parse_label_map(value)
    if isinstance(parsed, str):
        return parsed
    try:
        return {int(k): int(v) for k, v in parsed.items()}
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(
            f"--label-map: keys and values must be integers, e.g. '{{\"255\": 1}}'; got {value!r}"
        ) from err
