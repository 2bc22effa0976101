"""Ways to damage a stored episode on purpose, as disks and crashes do (for the data tests)."""

from __future__ import annotations

from pathlib import Path

from sslrobot.data.archive import list_members


def flip_member_byte(archive: Path, member: str, position: int = -1) -> None:
    """Flip one bit inside ``member``'s data in ``archive``: bit rot only a checksum sees."""
    where = list_members(archive)[member]
    data = bytearray(Path(archive).read_bytes())
    data[where.offset + position % where.size] ^= 0x01
    Path(archive).write_bytes(bytes(data))


def truncate(path: Path, keep: int) -> None:
    """Keep the first ``keep`` bytes of ``path`` (negative: drop that many from the end), as a
    power loss without fsync can leave a file."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:keep])
