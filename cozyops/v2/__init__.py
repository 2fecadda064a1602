"""Leaving Cozy v2: reading cozy-monitor exports, converting to v3 shapes, importing through the public API."""
