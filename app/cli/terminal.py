"""Text from the API made safe to print on a terminal.

Task fields (log lines, errors, params, type names) are whatever a job or a client put
there. A terminal acts on control characters: ESC opens the sequences that clear the
screen (``ESC [2J``), move the cursor or set the window's title (``ESC ]0;…BEL``), and
C1 characters such as U+009B do the same in one character; a carriage return rewrites
the line. Printed for people, every such character is shown escaped, as ``\\x1b``;
``--json`` output is JSON, which escapes them itself.
"""

from __future__ import annotations

import re

#: C0 controls but tab and newline, DEL, C1 controls: what text that may run over
#: several lines (a log message, a traceback) must not carry.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: The same, and tab and newline too: what one line (a table cell, a field) must not.
_CONTROL_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def lines(text: str) -> str:
    """``text`` with its control characters escaped; its newlines and tabs kept."""
    return _CONTROL.sub(_escape, text)


def one_line(value: object) -> str:
    """``value`` as text on one line: every control character escaped, ``\\n`` too."""
    return _CONTROL_OR_BREAK.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char, f"\\x{ord(char):02x}")
