"""Progress of ``nesydet submit`` on standard error: tqdm bars on a terminal, and plain lines
(at every tenth of the way, or when the stage changes) in a log or a pipe."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from tqdm import tqdm

STEPS = 10  # plain lines: one per tenth of the total


class Bar(Protocol):
    """A progress bar the submission moves forward."""

    def advance(self, amount: int) -> None:
        """Add ``amount`` done."""

    def show(self, done: int, note: str = "") -> None:
        """Set the amount done, and a short note (the job's stage)."""

    def note(self, note: str) -> None:
        """Set the note alone."""

    def close(self, note: str = "") -> None:
        """Finish the bar, with a last note."""


def human_bytes(count: float) -> str:
    """Return a byte count as text: ``512 B``, ``3.4 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"  # pragma: no cover - the loop returns


class _Quiet:
    def advance(self, amount: int) -> None:
        pass

    def show(self, done: int, note: str = "") -> None:
        pass

    def note(self, note: str) -> None:
        pass

    def close(self, note: str = "") -> None:
        pass


class _Tqdm:
    def __init__(self, label: str, total: int | None, unit: str, out: TextIO) -> None:
        in_bytes = unit == "B"
        self.bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            unit_scale=in_bytes,
            unit_divisor=1024 if in_bytes else 1000,
            file=out,
            leave=True,
            dynamic_ncols=True,
        )

    def advance(self, amount: int) -> None:
        self.bar.update(amount)

    def show(self, done: int, note: str = "") -> None:
        self.bar.update(done - self.bar.n)
        if note:
            self.bar.set_postfix_str(note, refresh=True)

    def note(self, note: str) -> None:
        self.bar.set_postfix_str(note, refresh=True)

    def close(self, note: str = "") -> None:
        if note:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.close()


class _Lines:
    """Plain lines: ``upload: 40% (1.2 MB of 3.0 MB)``, ``job_x: 2/5 images, processing``."""

    def __init__(self, label: str, total: int | None, unit: str, out: TextIO) -> None:
        self.label, self.total, self.unit, self.out = label, total, unit, out
        self.done = 0
        self.step = -1 if total else 0  # without a total: a line only for a new note
        self.text = ""
        self.printed: tuple[int, str] | None = None

    def _amount(self) -> str:
        if self.unit != "B":
            return f"{self.done}/{self.total} {self.unit}" if self.total else str(self.done)
        if self.total:
            return f"{human_bytes(self.done)} of {human_bytes(self.total)}"
        return human_bytes(self.done)

    def _line(self) -> None:
        shown = self._amount()
        if self.total:
            shown = f"{self.done * 100 // self.total}% ({shown})"
        note = f", {self.text}" if self.text else ""
        print(f"{self.label}: {shown}{note}", file=self.out, flush=True)
        self.printed = (self.done, self.text)

    def advance(self, amount: int) -> None:
        self.show(self.done + amount, self.text)

    def show(self, done: int, note: str = "") -> None:
        self.done = done
        step = done * STEPS // self.total if self.total else 0
        if step != self.step or note != self.text:
            self.step, self.text = step, note
            self._line()

    def note(self, note: str) -> None:
        self.show(self.done, note)

    def close(self, note: str = "") -> None:
        self.text = note or self.text
        if (self.done, self.text) != self.printed:
            self._line()


def bar(label: str, total: int | None, unit: str, *, quiet: bool = False) -> Bar:
    """Return a progress bar on standard error: a tqdm bar on a terminal, lines otherwise."""
    out = sys.stderr
    if quiet:
        return _Quiet()
    if out.isatty():
        return _Tqdm(label, total, unit, out)
    return _Lines(label, total, unit, out)
