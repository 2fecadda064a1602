"""Instances: their lifecycle on the fleet's servers, and moves between servers (move.py)."""
