"""STUB: to be replaced by its owner."""


def margin_offsets(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError

def MarginCalibrationLoss(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError
