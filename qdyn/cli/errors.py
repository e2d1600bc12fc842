"""One error convention for every ``qdyn`` command.

A user error (bad file, bad unit, bad config, a bad option value, a run directory that
cannot be used, a disk that refuses a write) ends the command with one line ``error: ...`` on stderr and exit
status 2; ``qdyn --debug`` (or ``QDYN_DEBUG=1``) shows the traceback instead. Anything else
is a bug in qdyn and keeps its traceback.

The conversion sits in the command group's ``invoke``, so it covers every sub-command, the
console script and typer's test runner alike.
"""

from __future__ import annotations

import logging
import os

import typer
from typer.core import TyperGroup

__all__ = ["QdynGroup", "user_error_types", "one_line", "setup_cli"]

EXIT_USER_ERROR = 2
_state = {"debug": False}


class _EchoHandler(logging.Handler):
    """Notices of the ``qdyn`` logger (e.g. a file read in ASE's units), one line each on
    the command's stderr, whatever stream is current (typer's test runner swaps it)."""

    def emit(self, record):
        typer.echo(self.format(record), err=True)


def setup_cli(*, debug: bool) -> None:
    """Called by the ``qdyn`` entry: ``--debug`` shows tracebacks of user errors, and the
    library's notices reach stderr."""
    _state["debug"] = bool(debug)
    log = logging.getLogger("qdyn")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        handler = _EchoHandler(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)


def _debug() -> bool:
    return _state["debug"] or os.environ.get("QDYN_DEBUG", "") not in ("", "0")


def user_error_types() -> tuple:
    """The exception classes qdyn raises for bad input (imported late: keeps ``--help`` fast)."""
    from ..checkpoint import CheckpointError
    from ..elements import UnknownElementError
    from ..train.config import ConfigError
    from ..units import UnitError
    from ..validation import QdynInputError

    return (QdynInputError, ConfigError, CheckpointError, UnitError, UnknownElementError, OSError)


def one_line(exc: BaseException) -> str:
    """The message of a user error on one line; OS errors name the file and the reason."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        msg = f"{where}: {exc.strerror}" if where else exc.strerror
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


class QdynGroup(TyperGroup):
    """The ``qdyn`` command group: user errors become ``error: ...`` and exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except user_error_types() as exc:
            if _debug():
                raise
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except typer.BadParameter as exc:  # a bad option value: the same one line, not a usage panel
            if _debug():
                raise
            # raised by hand without a param: click would prefix "Invalid value:" to a message
            # that already names the option
            msg = exc.message if exc.param is None else exc.format_message()
            typer.echo(f"error: {' '.join(msg.split())}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
