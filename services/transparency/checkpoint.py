"""C2SP ``tlog-checkpoint`` bodies (https://c2sp.org/tlog-checkpoint): the origin,
the tree size in decimal and the root hash in standard base64, one per line, then
optional extension lines."""

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Final

from services.transparency.hashing import HASH_SIZE
from services.transparency.note import NoteError

DEFAULT_ORIGIN: Final = "coreline/log/v1"
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's claimed state: ``size`` leaves with ``root`` as their MTH."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("a checkpoint's origin is one non-empty line")
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise NoteError("a checkpoint has a size ≥ 0 and a 32-byte root")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))

    @classmethod
    def parse(cls, text: str) -> "Checkpoint":
        """A checkpoint from a note's text (verify the note first: see ``Verifier.verify``)."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint is origin, size and root hash, one per line")
        origin, size, root, *extensions = lines[:-1]
        if not _DECIMAL.fullmatch(size):
            raise NoteError(f"a checkpoint's size is a decimal number, not {size!r}")
        try:
            decoded = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise NoteError("a checkpoint's root hash is not base64") from None
        return cls(origin, int(size), decoded, tuple(extensions))
