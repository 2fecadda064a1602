"""The double's ``cozy-stack`` commands, one module per file of cozy-stack's ``cmd/``."""
