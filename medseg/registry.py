"""A small name -> factory registry, with one instance per component kind, and the one route from a loss name to a loss.

An entry records what it needs from the run it is built for, beyond its own hyperparameters (:class:`Need`):
the margin-calibration losses need the class pixel counts of the training split, NeuroIoU takes a surrogate fitted
on the CE-trained model. :func:`create_loss` is the only builder: bundle overlays (through ``_target_``),
``medseg study``, ``medseg bench loss`` and the tests all call it, so a loss is built the same way everywhere.

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
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from medseg.typing import PathLike

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "CLASS_COUNTS",
    "LOSSES",
    "NETWORKS",
    "SURROGATE",
    "Need",
    "Registry",
    "create_loss",
    "create_network",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Need:
    """An input a registered component takes from the run it is built for, not from its hyperparameters.

    Attributes:
        argument: the constructor argument the input fills (``"class_counts"``).
        source: where it comes from, in words, for error messages and docs.
        required: ``False`` when the component has a documented fallback without it.
    """

    argument: str
    source: str
    required: bool = True


#: The class pixel counts of the training split, from which the margin offsets are computed (Yu et al., IJCV 2021,
#: Algorithm 1). :func:`create_loss` reads them from ``stats=`` (a ``stats.json`` or its parsed content).
CLASS_COUNTS = Need(
    "class_counts",
    "the class pixel counts of the training split: run `medseg-data stats DATALIST --num-classes K --out "
    "STATS_JSON` and pass stats=STATS_JSON (in a bundle: --stats_file), or pass class_counts=[...]",
)
#: A NeuroIoU surrogate fitted on the outputs of the CE-trained model (Nagendar et al., BMVC 2018, Sec. 3.1).
SURROGATE = Need(
    "surrogate",
    "a NeuroIoU surrogate fitted on the CE-trained model (medseg.training.fit_neuroiou_surrogate, then save() it "
    "and pass its path; in a bundle: --neuroiou_surrogate); without one a generic surrogate fitted on sampled "
    "statistics is used",
    required=False,
)


class Registry:
    """Maps names to classes or factory functions, with what each entry needs from the run (:class:`Need`).

    Args:
        kind: what the registry holds ("loss", "network"); used in error messages.
        plural: plural of ``kind`` for messages (default: ``kind + "s"``).
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, Callable[..., Any]] = {}
        self._needs: dict[str, tuple[Need, ...]] = {}

    def register(self, name: str, *, needs: Sequence[Need] = ()) -> Callable[[F], F]:
        """Decorator that registers a class or factory under ``name``.

        Args:
            name: a non-empty lower-case name, unique in this registry.
            needs: what the entry takes from the run it is built for (e.g. :data:`CLASS_COUNTS`).

        Raises:
            ValueError: if ``name`` is already registered or is not a non-empty lower-case identifier.
            TypeError: if ``needs`` holds anything but :class:`Need` objects.
        """
        if not isinstance(name, str) or not name or name != name.lower():
            raise ValueError(f"{self.kind} name must be a non-empty lower-case string, got {name!r}")
        needs = tuple(needs)
        if any(not isinstance(n, Need) for n in needs):
            raise TypeError(f"needs of {self.kind} {name!r} must be medseg.registry.Need objects, got {needs!r}")

        def decorator(obj: F) -> F:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to {self._entries[name]!r}; choose another name"
                )
            self._entries[name] = obj
            self._needs[name] = needs
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

    def needs(self, name: str) -> tuple[Need, ...]:
        """What the entry ``name`` takes from the run it is built for (KeyError for an unknown name)."""
        self.get(name)
        return self._needs.get(name, ())

    def needing(self, need: Need) -> list[str]:
        """The sorted names of the entries that take ``need`` (e.g. every loss built from class counts)."""
        return sorted(name for name, needs in self._needs.items() if need in needs)

    def create(self, name: str, **kwargs: Any) -> Any:
        """Call the factory registered under ``name`` with ``kwargs`` as given (no needs are filled in)."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"


LOSSES = Registry("loss", "losses")
NETWORKS = Registry("network")


def _accepted_arguments(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword arguments ``factory`` accepts, or ``None`` when it takes ``**kwargs`` (anything goes)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create_loss(
    name: str,
    *,
    stats: PathLike | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> Any:
    """Build the registered loss ``name``: the one route from a loss name to a loss.

    What the entry needs (:meth:`Registry.needs`) is filled in from the run: for the margin-calibration losses
    (``LOSSES.needing(CLASS_COUNTS)``) the class counts come from ``stats``, and τ/ν default to the values stored
    with them (else 10 and 1). Arguments given explicitly always win (``class_counts=``, or ``rho_neg``/``rho_pos``).
    A bundle overlay calls this through ``_target_``::

        {"_target_": "medseg.registry.create_loss", "name": "mc", "stats": "@stats_file",
         "num_classes": "@num_classes", "tau": 10.0}

    Args:
        name: a name from ``LOSSES.names()``.
        stats: the training split's class statistics: the path of a ``stats.json`` written by ``medseg-data
            stats``, or its parsed content (a mapping with ``class_counts``). Read only by losses that need it.
        num_classes: classes the network predicts; when given, the statistics must hold that many classes.
        **kwargs: the loss's own arguments.

    Returns:
        The loss module.

    Raises:
        KeyError: unknown loss name (the message suggests the closest names).
        FileNotFoundError: ``stats`` names a missing file, for a loss that needs class counts.
        ValueError: a required input is missing (the message says where it comes from), or the statistics are
            malformed or for another number of classes.
        TypeError: an argument the loss does not take (the message lists the ones it does).
    """
    import medseg.losses  # noqa: F401  (registers every loss)
    from medseg.margins import load_class_stats

    factory = LOSSES.get(name)
    needs = LOSSES.needs(name)
    kwargs = dict(kwargs)
    for need in needs:
        if need.argument in kwargs:
            continue
        if need is CLASS_COUNTS:
            if "rho_neg" in kwargs or "rho_pos" in kwargs:
                continue  # the offsets themselves were given
            if stats is None:
                raise ValueError(f"loss {name!r} needs {need.source}")
            data = load_class_stats(stats, num_classes)
            kwargs["class_counts"] = list(data["class_counts"])
            kwargs.setdefault("tau", float(data.get("tau", 10.0)))
            kwargs.setdefault("v", float(data.get("v", 1.0)))
        elif need.required:
            raise ValueError(f"loss {name!r} needs {need.argument}: {need.source}")
        else:
            logger.info("loss %r built without %s: %s", name, need.argument, need.source)
    if stats is not None and CLASS_COUNTS not in needs:
        logger.debug("loss %r does not use class statistics; stats %r not read", name, stats)
    accepted = _accepted_arguments(factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(
                f"loss {name!r} takes no argument(s) {', '.join(repr(u) for u in unknown)}; its arguments are: "
                f"{', '.join(sorted(accepted))}"
            )
    return factory(**kwargs)


def create_network(name: str, **kwargs: Any) -> Any:
    """Build a registered network by name (importing :mod:`medseg.networks` so every network is registered)."""
    import medseg.networks  # noqa: F401  (registers the networks)

    return NETWORKS.create(name, **kwargs)
