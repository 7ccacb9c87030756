"""Pure tensor functions behind the losses: probabilities in, unreduced per-(batch, class) scores out."""
