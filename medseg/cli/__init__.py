"""The ``medseg`` console script: thin wrappers over the stage packages. Nothing imports this package."""
