"""What `inv gc` prints: per version and kind, the objects and bytes, with a total."""

from __future__ import annotations

from typing import Any


def describe(report: dict[str, Any], apply: bool) -> list[str]:
    """What `inv gc` prints: per version and kind, the objects and bytes, with a total."""
    lines = []
    total = 0
    for phase, title in (("tombstoned", "tombstone"), ("swept", "sweep")):
        for version, planned in report[phase].items():
            by_kind: dict[str, list[int]] = {}
            for removal in planned:
                by_kind.setdefault(removal.kind, []).append(removal.bytes)
            kinds = ", ".join(f"{k} {len(b)} ({_size(sum(b))})" for k, b in by_kind.items())
            size = sum(r.bytes for r in planned)
            total += size
            verb = {"tombstone": "tombstoned" if apply else "would tombstone",
                    "sweep": "swept" if apply else "would sweep"}[title]  # fmt: skip
            lines.append(f"{version}: {verb}: {kinds or 'nothing'} = {_size(size)}")
    for version, (due, planned) in report["waiting"].items():
        size = sum(r.bytes for r in planned)
        lines.append(f"{version}: tombstoned, swept after {due:%Y-%m-%d %H:%M} UTC ({_size(size)})")
    for version, found in report.get("unnamed", {}).items():
        size = sum(h.bytes for h in found)
        total += size
        verb = "removed" if apply else "would remove"
        lines.append(f"{version}: {verb} {len(found)} object(s) no record names ({_size(size)})")
    for line in report["withdrawn"]:
        lines.append(f"kept after all, tombstone withdrawn: {line}")
    for version, why in report["kept"].items():
        lines.append(f"{version}: kept: {why}")
    lines.append(f"total: {_size(total)}" + ("" if apply else " (dry run: nothing changed)"))
    return lines


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
