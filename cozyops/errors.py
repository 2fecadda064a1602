"""The error tree. Errors carry data; the CLI renders them as one line.

A ``CozyopsError`` is a known failure: the CLI prints ``str(error)`` (which names the object
concerned) and exits with ``exit_code``. Anything else is a bug: the CLI logs its traceback.
"""

from __future__ import annotations


class CozyopsError(Exception):
    """A known failure, rendered as one line naming its subject."""

    exit_code = 1

    def __init__(self, subject: str, reason: str, hint: str | None = None) -> None:
        self.subject = subject
        self.reason = reason
        self.hint = hint
        super().__init__(subject, reason, hint)

    def __str__(self) -> str:
        line = f"{self.subject}: {self.reason}"
        if self.hint:
            line += f" ({self.hint})"
        return line


class UnsafePlanError(CozyopsError):
    """A plan that would change too much; only ``--force`` lets it through."""

    exit_code = 2


class NeedsRootError(CozyopsError):
    """The operation needs root (namespaces, packages)."""


class MissingPackagesError(CozyopsError):
    """Debian packages the operation needs are not installed."""

    def __init__(self, subject: str, packages: list[str], hint: str) -> None:
        self.packages = packages
        super().__init__(subject, "missing Debian packages " + ", ".join(packages), hint)


class LabError(CozyopsError):
    """The local lab could not be brought up, inspected or taken down."""


class ConfigError(CozyopsError):
    """Bad input: a file, option or value that cozyops cannot use."""


class DnsError(CozyopsError):
    """A DNS server refused, failed or did not answer (names the server, zone and key; never the secret)."""
