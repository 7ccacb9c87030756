"""medseg.inference."""
