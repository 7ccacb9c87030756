"""STUB: to be replaced by its owner."""


def CrossEntropyLoss(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError
