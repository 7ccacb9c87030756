"""medseg.bench."""
