"""The one exception type for errors a user can cause, and how its messages are shown."""

import re


class SrganError(Exception):
    """A problem the user can fix (bad path, broken image, wrong weights).

    The message is one line that says what went wrong and, where it helps, what to do.
    The CLI prints it as ``error: <message>`` and exits non-zero, without a traceback.
    """


class SrganWarning(UserWarning):
    """What the Python API kept from an image less than whole (frames after the first, 16 bits read as 8,
    a CMYK profile converted): the notes ``srgan upscale`` prints, one per warning."""


# An empty model name: most often an unset variable in a script (Path("") is ".", "a folder").
EMPTY_MODEL = "an empty model (an unset variable?); give a model name, a .safetensors file or a Hub reference"


class OptionError(SrganError):
    """A bad option value or combination found past click's own checks: the CLI exits 2, as for
    click's usage errors, so scripts can tell a wrong command line from a failed run."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters (its type name if empty),
    for quoting a library's error inside a one-line message."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


# control characters, and the lone surrogates U+DC80..U+DCFF that hold the bytes of a name that is not
# valid UTF-8 (os.fsdecode)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    code = ord(char)
    return _ESCAPES.get(char) or f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def printable(text: str) -> str:
    """``text`` on one line and faithful: control characters (a newline or tab in a file name, a
    terminal escape sequence) written as ``\\n``, ``\\t``, ``\\x1b``. Collapsing them into spaces
    made "new\\nline.png" and "new line.png" read the same, and an escape sequence in a name was
    run by the terminal (or stripped from a log, so two names read the same there). A byte of a
    name that is not valid UTF-8 is written ``\\xff`` too: stderr wrote its surrogate as ``\\udcff``."""
    return _CONTROL.sub(lambda m: _escape(m[0]), text)


def utf8_safe(text: str) -> str:
    """``text`` storable as UTF-8 (safetensors metadata, PNG iTXt, EXIF): a path that is not valid
    UTF-8 (undecodable bytes, held as surrogates) is kept with those bytes as ``\\xNN`` escapes;
    it raised UnicodeEncodeError (a traceback, a file not written)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def exact_number(value: float) -> str:
    """A float as recorded or shown where it must be the value used: its shortest exact form (``repr``),
    a whole number without ".0", never "-0". ``:g`` kept 6 digits: a blend of 0.99999999 was recorded
    as "@1", B alone, and 0.1234567 and 0.1234568 alike."""
    value = float(value)
    if value == 0:
        return "0"
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
