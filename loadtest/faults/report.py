"""One row of figures per fault scenario, printed as a table for people and for RELIABILITY.md."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = (
    "scenario",
    "load held",
    "faults injected",
    "requests",
    "failed",
    "rewards acknowledged",
    "rewards lost",
    "decisions lost (bound)",
)


@dataclass(frozen=True, slots=True)
class Row:
    """What one scenario held, broke and lost."""

    scenario: str
    load: str
    faults: str
    requests: int
    failed: int
    rewards_acknowledged: int
    rewards_lost: int
    decisions_lost: int
    # The most decisions the scenario may lose, stated before it runs (0: none may be lost).
    decisions_bound: int
    command: str
    notes: str = ""

    def cells(self) -> list[str]:
        failed = f"{self.failed} ({self.failed / self.requests:.2%})" if self.requests else str(self.failed)
        return [
            self.scenario,
            self.load,
            self.faults,
            str(self.requests),
            failed,
            str(self.rewards_acknowledged),
            str(self.rewards_lost),
            f"{self.decisions_lost} (≤ {self.decisions_bound})",
        ]


def markdown(rows: list[Row]) -> str:
    """The rows as a markdown table, then the command and notes of each."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines.append("")
    for row in rows:
        lines.append(f"- **{row.scenario}**: `{row.command}`" + (f" — {row.notes}" if row.notes else ""))
    return "\n".join(lines)


def print_row(row: Row) -> None:
    """One scenario's figures, one per line (what `pytest -s` shows)."""
    print(f"\n── {row.scenario} ──")
    for column, cell in zip(COLUMNS[1:], row.cells()[1:], strict=True):
        print(f"  {column:>24}: {cell}")
    if row.notes:
        print(f"  {'notes':>24}: {row.notes}")
    print(f"  {'reproduce':>24}: {row.command}")
