"""The one failure type of ``nesydet submit``: an error code, a message and an exit status."""

from __future__ import annotations

# Exit statuses: a script can tell "fix the input" from "try again later" from "it failed".
EXIT_FAILED = 1  # the server refused the request, or a job failed or was cancelled
EXIT_USAGE = 2  # nothing was sent: bad arguments or input
EXIT_UNREACHABLE = 3  # the server could not be reached (or stopped answering): retry later
EXIT_INTERRUPTED = 130


class SubmitError(Exception):
    """A failure shown as ``CODE: message`` (the API's error code where the server gave one),
    then ``lines`` one per line (an upload's refused files), and ended with ``exit_status``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        exit_status: int = EXIT_FAILED,
        lines: list[str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.exit_status = exit_status
        self.lines = lines or []

    def render(self) -> str:
        """Return the text printed on standard error."""
        return "\n".join([f"{self.code}: {self.message}", *(f"  {line}" for line in self.lines)])


def usage(code: str, message: str) -> SubmitError:
    """Return an error about the command's own input: nothing was sent."""
    return SubmitError(code, message, exit_status=EXIT_USAGE)
