"""Verified downloads: every file is checked against a sha256 before it is used."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from facediag.core.files import atomic_write

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, HTTP error) or failed its checksum."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the expected one."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None) -> str:
    """Return the file's sha256; raise ChecksumError naming the file if it differs from ``expected``."""
    actual = sha256_file(path)
    if expected and actual.lower() != expected.lower():
        raise ChecksumError(f"{path}: sha256 {actual} does not match the expected {expected.lower()}")
    return actual


def _fetch_checked(url: str, out: IO[bytes], expected: str | None, timeout: float) -> None:
    """Stream ``url`` into ``out``; ChecksumError when its sha256 differs from ``expected`` (it never lands)."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        for block in iter(lambda: response.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
    if expected and digest.hexdigest() != expected.lower():
        raise ChecksumError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {expected.lower()}")


def download_verified(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    sha256: str | None,
    timeout: float = 30.0,
) -> Path:
    """Fetch the first reachable URL to ``dest`` atomically, checking its sha256 before it lands.

    A file already at ``dest`` is re-verified, never trusted blindly. Raises DownloadError with
    every URL tried and the reason, so an offline user knows what to place where.
    """
    dest = Path(dest)
    if dest.exists():
        verify_sha256(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    candidates = [urls] if isinstance(urls, str) else list(urls)
    failures: list[str] = []
    for url in candidates:
        try:
            return atomic_write(dest, lambda out, url=url: _fetch_checked(url, out, sha256, timeout), suffix=".part")
        except ChecksumError as err:
            failures.append(f"{url}: {err}")
        except urllib.error.HTTPError as err:
            failures.append(f"{url}: HTTP {err.code} {err.reason}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            failures.append(f"{url}: {getattr(err, 'reason', err)}")
    tried = "\n  ".join(failures) or "(no URL configured)"
    raise DownloadError(f"could not fetch {dest.name} into {dest.parent}; tried:\n  {tried}")
