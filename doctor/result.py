"""What one doctor check found."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

# ok: works. missing: not set up here, and `fix` says how to set it up.
# unavailable: this kernel or machine cannot do it (no fix short of another kernel or hardware);
# uvmtrace falls back where it can. needs root: only root can check it (doctor ran as a user).
Status = Literal["ok", "missing", "unavailable", "needs root"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def missing(name: str, detail: str, fix: str) -> Check:
    return Check(name, "missing", detail, fix)


def unavailable(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "unavailable", detail, fix)


def needs_root(name: str, what: str) -> Check:
    return Check(name, "needs root", f"not checked: {what}", "sudo uvmtrace doctor")
