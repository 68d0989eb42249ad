"""Where the accounts come from: a directory holding one key file per account.

Each file's name is the account's name and its content that account's API key, which is
how a Kubernetes Secret (one per account, projected into one volume) or a Docker secret
appears in a container. The list of names is read without opening any file, so the
sensor that keeps the partitions in line never holds a key; a run reads its own only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# A Dagster partition key, a file name, a Kubernetes Secret key and a tap account name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class AccountsError(Exception):
    """The keys directory cannot be read, or one of its entries is not a usable account."""


@dataclass(frozen=True)
class KeysDir:
    """A directory of ``<account name>`` files, each holding that account's API key."""

    path: Path

    def names(self) -> list[str]:
        """The account names, sorted; hidden entries (Kubernetes' ``..data``) are not accounts."""
        try:
            entries = [p.name for p in self.path.iterdir() if not p.name.startswith(".")]
        except OSError as exc:
            msg = f"the keys directory {self.path} cannot be listed: {exc.strerror}"
            raise AccountsError(msg) from None
        bad = sorted(n for n in entries if not NAME.fullmatch(n))
        if bad:
            msg = (
                f"{self.path}: {', '.join(map(repr, bad))} is not an account name "
                "(letters, digits, '.', '_' and '-', 64 at most, starting with a letter or digit)"
            )
            raise AccountsError(msg)
        return sorted(entries)

    def key_of(self, name: str) -> str:
        """The API key of one account, read from its file."""
        if not NAME.fullmatch(name):
            raise AccountsError(f"{name!r} is not an account name")
        try:
            key = (self.path / name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"account {name}: no key at {self.path / name} ({exc.strerror})"
            raise AccountsError(msg) from None
        if not key:
            raise AccountsError(f"account {name}: {self.path / name} is empty")
        return key
