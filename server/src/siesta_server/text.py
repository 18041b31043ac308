"""Generated tokens -> text deltas: UTF-8 reassembly and stop strings.

A token can end in the middle of a UTF-8 character, and a stop string can span tokens, so
text is released only when it can no longer change: complete characters that cannot be the
start of a stop string.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in stop if s]
        self._held = ""
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to send."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        if not self._stop:
            released, self._held = self._held, ""
            return released
        first = min(
            (i for i in (self._held.find(s) for s in self._stop) if i >= 0),
            default=-1,
        )
        if first >= 0:
            self.stopped = True
            released, self._held = self._held[:first], ""
            return released
        keep = self._longest_stop_prefix_suffix()
        cut = len(self._held) - keep
        released, self._held = self._held[:cut], self._held[cut:]
        return released

    def finish(self) -> str:
        """The rest of the text at the end of generation (not after a stop string)."""
        if self.stopped:
            return ""
        rest = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return rest

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest end of the held text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for length in range(min(len(stop) - 1, len(self._held)), longest, -1):
                if self._held.endswith(stop[:length]):
                    longest = length
                    break
        return longest
