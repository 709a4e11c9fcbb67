"""Console destination: alerts as plain text on standard output.

For trying watchlists out (``news-monitor try``) and for running under systemd,
where stdout lands in the journal.
"""

from __future__ import annotations

import sys
from typing import ClassVar, TextIO

from monitor.sanitize import escape_control
from monitor.types import Alert, Receipt, Rendered


class ConsoleSender:
    """Writes each rendered alert's text, then a blank line, and flushes.

    ``stream`` defaults to ``sys.stdout`` as it is at the moment of sending,
    so pytest's capsys and redirections made after start-up still work.
    """

    kind: ClassVar[str] = "console"

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream

    async def send(self, alert: Alert, message: Rendered) -> Receipt:
        stream = self._stream if self._stream is not None else sys.stdout
        # Titles and links come from feeds: a terminal must show escapes, not obey them.
        stream.write(escape_control(message.text.rstrip("\n")) + "\n\n")
        stream.flush()
        return Receipt()

    async def aclose(self) -> None:
        """Nothing to close; the stream is not ours."""
