"""One episode as one uncompressed zip of ``.npy`` members (an ``.npz``), readable in place.

Why a zip: one file per episode costs one file creation instead of eight plus a directory
(``scripts/bench_data.py --sections overhead``: file creation was most of what storage added
to the collector's loop), the format is standard (``np.load("ep_000042.npz")``, ``unzip -t``),
and every member carries a CRC-32 that the writer computes in C while it writes. Members are
stored, not compressed, so an array's bytes sit contiguously in the file: readers memory-map
or ``pread`` them at the member's offset, as fast as separate ``.npy`` files (``numpy.load``
of an ``.npz`` would read the whole member instead).
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: A fixed member timestamp (zip needs some date), so equal members give equal bytes; an
#: episode's archive as a whole still differs between runs through its meta.json (the shard
#: and the time it was collected), never through its arrays.
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra field length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CRC_CHUNK = 1 << 20
_ENCRYPTED_FLAG = 0x1  # general purpose bit 0 of a zip entry
#: What ``zipfile`` raises, besides ``BadZipFile``, for a damaged entry: a flipped encryption
#: flag ("password required") or compression method ("compression type N"), or a local
#: header's lengths pointing past the end of the file (EOFError, struct.error).
_DAMAGED_ZIP_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    NotImplementedError,
    EOFError,
    struct.error,
)


@dataclass(frozen=True)
class Member:
    """Where one stored member's bytes lie in the archive file."""

    name: str
    offset: int  # first byte of the member's data in the file
    size: int  # bytes


def write_archive(
    file: BinaryIO, members: Mapping[str, Sequence[bytes | memoryview]], text: Mapping[str, str]
) -> None:
    """Write ``members`` (name -> chunks of bytes) then ``text`` (name -> str) as a stored zip.

    ``zipfile`` computes each member's CRC-32 as the chunks go by (no extra pass, no copy of
    the chunks); zip64 records are used only for members too large for plain zip.
    """
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, chunks in members.items():
            size = sum(len(chunk) for chunk in chunks)
            with archive.open(_info(name), "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as out:
                for chunk in chunks:
                    out.write(chunk)
        for name, content in text.items():
            archive.writestr(_info(name), content.encode("utf-8"))


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
    info.external_attr = 0o644 << 16  # rw-r--r-- when unzipped
    return info


def list_members(path: Path) -> dict[str, Member]:
    """The stored members of an archive and where their data starts, from its directory.

    Raises:
        ValueError: not a complete zip (e.g. truncated: the central directory is at the end),
            a compressed member, or a member whose local header is not where the directory says.
    """
    try:
        with open(path, "rb") as file, zipfile.ZipFile(file) as archive:
            members = {}
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{path}: member {info.filename} is compressed")
                if info.flag_bits & _ENCRYPTED_FLAG:
                    raise ValueError(f"{path}: member {info.filename} is marked encrypted")
                file.seek(info.header_offset)
                signature, name_length, extra_length = _LOCAL_HEADER.unpack(
                    file.read(_LOCAL_HEADER.size)
                )
                if signature != _LOCAL_SIGNATURE:
                    raise ValueError(f"{path}: no local header for member {info.filename}")
                offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
                members[info.filename] = Member(info.filename, offset, info.file_size)
            return members
    except (OSError, zipfile.BadZipFile, struct.error, *_DAMAGED_ZIP_ERRORS) as error:
        raise ValueError(f"{path}: not a complete episode archive ({error})") from error


def read_text_member(path: Path, name: str) -> str:
    """A member as text, its CRC-32 checked (``zipfile`` raises on a mismatch).

    Raises:
        ValueError: the archive or the member is missing, truncated or corrupt.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, *_DAMAGED_ZIP_ERRORS) as error:
        raise ValueError(f"{path}: not a complete episode archive ({error})") from error
    try:
        with archive:
            return archive.read(name).decode("utf-8")
    except (
        OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, *_DAMAGED_ZIP_ERRORS
    ) as error:  # fmt: skip
        raise ValueError(f"cannot read {name} from {path}: {error}") from error


def read_json_member(path: Path, name: str) -> dict[str, Any]:
    """A JSON member of an archive (see ``read_text_member``)."""
    try:
        return json.loads(read_text_member(path, name))
    except json.JSONDecodeError as error:
        raise ValueError(f"cannot read {name} from {path}: {error}") from error


def crc_problems(path: Path) -> list[str]:
    """Members whose bytes no longer match their CRC-32 (bit flips), each named."""
    problems = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                try:
                    with archive.open(info) as member:
                        while member.read(_CRC_CHUNK):
                            pass
                except (zipfile.BadZipFile, *_DAMAGED_ZIP_ERRORS) as error:
                    problems.append(f"{path}: member {info.filename} is corrupt ({error})")
    except (OSError, zipfile.BadZipFile, *_DAMAGED_ZIP_ERRORS) as error:
        problems.append(f"{path}: unreadable archive ({error})")
    return problems
