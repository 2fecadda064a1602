"""cozyops: the operations toolkit for people who host Cozy (cozy-stack) instances."""

__version__ = "0.1.0"
