"""The ``medseg-data`` console script: clinical dataset preprocessing as a command line over the library.

Each command in :mod:`data_tools.commands` parses its options and calls a library function: splits, integrity
checks, class statistics and 2D slice conversion live in :mod:`medseg.data`, image and label files are read and
written through :mod:`medseg.imageio`. The converters that only this command line needs (DICOM series to NIfTI,
RTSTRUCT and LIDC contours to masks, EndoVis frames) live here. The library never imports this package.
"""
