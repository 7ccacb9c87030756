"""medseg.training."""
