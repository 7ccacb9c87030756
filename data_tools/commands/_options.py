"""Option parsers shared by the ``medseg-data`` commands: the library's, re-exported under their old home.

``--label-map`` is parsed by :func:`medseg.data.label_map.label_map_arg` (the one parser every command and
``medseg evaluate`` use); import it from there. This module only keeps commands written against the old path
working until they switch.
"""

from __future__ import annotations

from medseg.data.label_map import label_map_arg

__all__ = ["label_map_arg"]
