"""Downloads that never leave a file that looks complete but is not, and archive extraction.

A download streams into a temporary file beside its target (progress bar), is checked against its
checksum (or, where no checksum is known with certainty, by the caller's format check) and only
then renamed into place. Mirrors are tried in order; ``https://`` is used wherever the host offers
it, and a plain ``http://`` URL is refused unless a checksum pins the file. Archives are extracted
into a temporary folder beside the destination and moved into place once complete, refusing
members that would land outside it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

TIMEOUT_SECONDS = 60
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHUNK_BYTES = 1 << 16


class DownloadError(OSError):
    """A file could not be fetched, or what arrived is not the expected file (nothing was kept)."""


@dataclass(frozen=True)
class Checksum:
    """``algorithm`` ("sha256" or "md5") digest of the file, or of its gunzipped content (``of_content``)."""

    algorithm: str
    hexdigest: str
    of_content: bool = False

    def of(self, path: Path) -> str:
        digest = hashlib.new(self.algorithm)
        opener = gzip.open if self.of_content else open
        with opener(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def verify(self, path: Path, source: str) -> None:
        try:
            found = self.of(path)
        except (OSError, EOFError) as error:
            raise DownloadError(f"{source} is not a readable {'gzip ' if self.of_content else ''}file: {error}") from None
        if found != self.hexdigest:
            what = "its gunzipped content has" if self.of_content else "it has"
            raise DownloadError(f"{source}: {what} {self.algorithm.upper()} {found}, expected {self.hexdigest} "
                                "(corrupt or tampered download; it was not kept)")


def _stream(url: str, handle, label: str, progress: bool) -> None:
    from robustdml.progress import progress_bar

    request = urllib.request.Request(url, headers={"User-Agent": "robustdml"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with progress_bar(total=total, unit="B", unit_scale=True, desc=label, leave=False, disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                bar.update(len(chunk))


def download(urls: Sequence[str], target: Path, checksum: Optional[Checksum] = None,
             verify: Optional[Callable[[Path], object]] = None, progress: bool = True) -> Path:
    """Fetch ``target`` from the first of ``urls`` that delivers the expected file.

    ``checksum`` pins the file; ``verify(tmp_path)`` (must raise if the file is wrong) checks its format.
    Raises DownloadError naming every URL tried and why it failed; nothing is left at ``target``.
    """
    target = Path(target)
    for url in urls:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "http" and parsed.hostname not in LOOPBACK and checksum is None:
            raise ValueError(f"refusing to download {url} over plain http without a checksum")
    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        # Same folder (so the rename is atomic) and same suffix (so ``verify`` sees e.g. ``.gz``).
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".part{target.suffix}")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                _stream(url, handle, target.name, progress)
            if checksum is not None:
                checksum.verify(tmp, url)
            if verify is not None:
                verify(tmp)
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, OSError, ValueError, EOFError) as error:
            reason = getattr(error, "reason", None) or error
            failures.append(f"{url}: {reason}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(f"could not download {target.name} (" + "; ".join(failures) + ")")


def _check_member_paths(archive: Path, names: Sequence[str]) -> None:
    for name in names:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise DownloadError(f"{archive} holds {name!r}, which would land outside the extraction folder; "
                                "refusing to extract it")


def extract(archive: Path, top: str, final: Path, progress: bool = True) -> Path:
    """Extract the ``top/`` folder of ``archive`` (.tgz/.tar.gz/.zip) as ``final``.

    Everything is unpacked into a temporary folder beside ``final`` first and moved into place once
    complete, so an interrupted extraction never looks like a dataset.
    """
    from robustdml.progress import progress_bar

    archive, final = Path(archive), Path(final)
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if final.exists():
        raise DownloadError(f"{final} already exists but does not hold the complete dataset; move it away or "
                            "delete it, then run the command again")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.extract-"))
    label = f"extracting {archive.name}"
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                members = [m for m in bundle.namelist() if m.startswith(f"{top}/")]
                _check_member_paths(archive, members)
                for member in progress_bar(members, desc=label, unit="file", disable=not progress, leave=False):
                    bundle.extract(member, staging)  # each member's CRC is checked as it is read
        else:
            with tarfile.open(archive) as bundle:
                members = [m for m in bundle.getmembers() if m.name.startswith(f"{top}/")]
                _check_member_paths(archive, [m.name for m in members])
                for member in progress_bar(members, desc=label, unit="file", disable=not progress, leave=False):
                    bundle.extract(member, staging, filter="data")
        if not (staging / top).is_dir():
            raise DownloadError(f"{archive} has no {top}/ folder; is it the right archive?")
        os.replace(staging / top, final)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DownloadError(f"{archive} is not a complete .tgz/.zip archive ({error}); delete it and fetch it "
                            "again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
