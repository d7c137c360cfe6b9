"""`uvmtrace doctor`: check what this host can trace, and what is missing."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from uvmtrace.doctor import Check, DoctorReport, run_doctor

TRACEPOINT = "tracepoint "
STYLE = {"ok": "green", "missing": "bold red", "unavailable": "yellow", "needs root": "cyan"}

# Exit code when a recording is impossible here (0 when it is possible).
EXIT_CANNOT_RECORD = 1


@click.command(
    "doctor",
    help="Check what this host can trace, and what is missing: root, bpf(), tracefs and each "
    "tracepoint, kprobes, fentry, BTF, BCC, cgroups, Docker, C compiler, CUDA driver, NVML. "
    "Exits 0 when recording is possible, 1 when not. Without root it checks what a user can "
    "and marks the rest 'needs root'.\n\n"
    "\b\nExamples:\n  sudo uvmtrace doctor\n  sudo uvmtrace doctor --json | jq .can_record",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: can_record and the checks.")
def command(as_json: bool) -> int:
    report = run_doctor()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_table(report)
    return 0 if report.can_record else EXIT_CANNOT_RECORD


def _print_table(report: DoctorReport) -> None:
    console = Console()
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail / how to fix", overflow="fold")
    for c in _grouped(report.checks):
        # A missing piece has a fix; an unavailable one has a consequence (what uvmtrace does).
        lead = "-> " if c.status == "unavailable" else "fix: "
        shown_fix = c.fix and not c.ok and c.status != "needs root"  # said once, below
        detail = escape(c.detail) + (f"\n[dim]{lead}{escape(c.fix)}[/]" if shown_fix else "")
        table.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", detail)
    console.print(table)
    if any(c.status == "needs root" for c in report.checks):
        console.print("the checks marked 'needs root' run with: sudo uvmtrace doctor")
    if report.can_record:
        console.print("[green]recording is possible on this host[/]")
    else:
        # what needs root to be checked at all is not yet a blocker of its own
        names = ", ".join(c.name for c in report.blockers if c.status != "needs root")
        console.print(f"[bold red]recording is not possible here:[/] fix {names}")


def _grouped(checks: list[Check]) -> list[Check]:
    """The terminal view folds the tracepoint checks into one line per category (memcg, syscalls,
    ...) so the table fits a terminal; --json keeps one entry per tracepoint."""
    out: list[Check] = []
    groups: dict[str, list[Check]] = {}
    for c in checks:
        if not c.name.startswith(TRACEPOINT):
            out.append(c)
            continue
        category = c.name.removeprefix(TRACEPOINT).split(":")[0]
        if category not in groups:
            groups[category] = []
            out.append(Check(f"{TRACEPOINT}{category}", "ok", ""))  # placeholder, filled below
        groups[category].append(c)
    for i, c in enumerate(out):
        if c.name.startswith(TRACEPOINT):
            out[i] = _fold(c.name, groups[c.name.removeprefix(TRACEPOINT)])
    return out


def _fold(name: str, members: list[Check]) -> Check:
    events = [m.name.split(":", 1)[1] for m in members]
    bad = [m for m in members if not m.ok]
    if not bad:
        return Check(name, "ok", ", ".join(events))
    worst = "missing" if any(m.status == "missing" for m in bad) else "unavailable"
    detail = "; ".join(f"{m.name.split(':', 1)[1]}: {m.detail}" for m in bad)
    fixes = sorted({m.fix for m in bad if m.fix})
    return Check(name, worst, detail, "; ".join(fixes))
