"""The ticket printer agent: prints the hub's signed print jobs on an ESC/POS thermal printer.

A job arrives as a signed ``print.job`` envelope (:mod:`protocol.printing`), is verified, rendered
from a TOML template (:mod:`printer_agent.template`) to ESC/POS bytes (:mod:`printer_agent.escpos_render`),
stored in a SQLite queue (:mod:`printer_agent.store`) and printed at most once
(:mod:`printer_agent.worker`). The same template renders to a PNG preview (:mod:`printer_agent.preview`).
"""

__version__ = "0.1.0"


class PrinterAgentError(Exception):
    """Root of every error raised by :mod:`printer_agent`."""


class ConfigError(PrinterAgentError, ValueError):
    """The configuration file or environment is invalid; the message names the bad key."""


class TemplateError(PrinterAgentError, ValueError):
    """A template is missing (``code="unknown_template"``) or invalid (``code="bad_template"``)."""

    def __init__(self, message: str, code: str = "bad_template") -> None:
        super().__init__(message)
        self.code = code


class DeviceError(PrinterAgentError, OSError):
    """The printer cannot be reached or refused the data; ``code`` is the PrintResult reason."""

    def __init__(self, message: str, code: str = "offline") -> None:
        super().__init__(message)
        self.code = code
