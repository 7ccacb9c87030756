"""A small name -> factory registry, with one instance per component kind.

Example:
    >>> from medseg.registry import Registry
    >>> things = Registry("things")
    >>> @things.register("box")
    ... def make_box(size: int = 1) -> tuple[str, int]:
    ...     return ("box", size)
    >>> things.create("box", size=3)
    ('box', 3)
    >>> things.names()
    ['box']
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["LOSSES", "NETWORKS", "Registry", "create_loss", "create_network"]


class Registry:
    """Maps names to classes or factory functions.

    Args:
        kind: what the registry holds ("loss", "network"); used in error messages.
        plural: plural of ``kind`` for messages (default: ``kind + "s"``).
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers a class or factory under ``name``.

        Raises:
            ValueError: if ``name`` is already registered or is not a non-empty lower-case identifier.
        """
        if not isinstance(name, str) or not name or name != name.lower():
            raise ValueError(f"{self.kind} name must be a non-empty lower-case string, got {name!r}")

        def decorator(obj: F) -> F:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to {self._entries[name]!r}; choose another name"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        """Return the class or factory registered under ``name``.

        Raises:
            KeyError: for an unknown name; the message lists the closest registered names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.plural}: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the component registered under ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


LOSSES = Registry("loss", "losses")
NETWORKS = Registry("network")


def create_loss(name: str, **kwargs: Any) -> Any:
    """Build a registered loss by name (importing :mod:`medseg.losses` so every loss is registered)."""
    import medseg.losses  # noqa: F401  (registers the losses)

    return LOSSES.create(name, **kwargs)


def create_network(name: str, **kwargs: Any) -> Any:
    """Build a registered network by name (importing :mod:`medseg.networks` so every network is registered)."""
    import medseg.networks  # noqa: F401  (registers the networks)

    return NETWORKS.create(name, **kwargs)
