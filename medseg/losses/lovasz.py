"""STUB: to be replaced by its owner."""


def LovaszSoftmaxLoss(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError
