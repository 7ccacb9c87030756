"""Clinical dataset preprocessing behind the ``medseg-data`` console script.

DICOM series to NIfTI, RTSTRUCT and LIDC contours to masks, dataset conversion (2D slices, EndoVis), splits,
integrity checks and the class statistics that margin calibration needs.
"""
