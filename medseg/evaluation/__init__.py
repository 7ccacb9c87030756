"""medseg.evaluation."""
