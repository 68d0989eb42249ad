"""Writing Singer messages: msgspec encoding, flushed at each STATE, not at each record.

The SDK's msgspec writer flushes stdout after every message, and under
PYTHONUNBUFFERED (Meltano and many schedulers set it) stdout has no buffer at all:
one system call per record. Records are only safe once a STATE message after them
has reached the target, so writing them in blocks and flushing at every non-RECORD
message loses nothing: a crash drops at most records that no bookmark covers yet,
and the next run reads them again. The SDK skips a STATE equal to the last one, so
the block is also written when the process exits.
"""

from __future__ import annotations

import atexit
import sys

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import Message, SingerMessageType
from typing_extensions import override

BLOCK_BYTES = 256 * 1024


class BufferedWriter(MsgSpecWriter):
    """MsgSpecWriter that writes records in blocks and flushes at every other message."""

    def __init__(self) -> None:
        """Start with an empty block."""
        super().__init__()
        self._block = bytearray()
        atexit.register(self.flush)

    @override
    def write_message(self, message: Message) -> None:
        """Add one message to the block; write the block out when full or not a record."""
        block = self._block
        block += self.format_message(message)
        if message.type != SingerMessageType.RECORD or len(block) >= BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write out the block."""
        if self._block:
            sys.stdout.buffer.write(self._block)
            sys.stdout.flush()
            self._block.clear()
