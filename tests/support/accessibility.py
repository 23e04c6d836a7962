"""axe-core, the accessibility engine (the npm package run inside the page under test,
installed from ``tests/support/axe/package-lock.json``), and a check that runs it."""

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_DIR = Path(__file__).parent / "axe"
AXE_SCRIPT = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
"""What fails a page: axe's two highest impacts (minor and moderate are reported only)."""


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    impact: str
    help: str
    targets: tuple[str, ...]

    def __str__(self) -> str:
        more = f" and {len(self.targets) - 3} more" if len(self.targets) > 3 else ""
        return f"{self.impact} {self.rule} ({self.help}) at {', '.join(self.targets[:3])}{more}"


def install_axe() -> None:
    """``npm ci`` once, when ``node_modules`` is missing (the lock file pins it)."""
    if AXE_SCRIPT.is_file():
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is missing: install Node.js 20 or later"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR, check=True, timeout=300,
        capture_output=True,
    )  # fmt: skip


@cache
def axe_source() -> str:
    install_axe()
    return AXE_SCRIPT.read_text(encoding="utf-8")


def violations(page: Page) -> list[Violation]:
    """Every WCAG 2.x A/AA and best-practice violation axe finds on the page as it is now.

    axe arrives through the browser's debugging protocol, which the page's
    Content-Security-Policy (no inline script) does not govern, so the page is
    checked under the policy it really has."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source() + "\n;undefined")
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {
                runOnly: { type: "tag",
                           values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa",
                                    "best-practice"] },
                resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                rule: v.id, impact: v.impact || "", help: v.help,
                targets: v.nodes.map((node) => node.target.join(" ")),
            }));
        }"""
    )
    return [Violation(v["rule"], v["impact"], v["help"], tuple(v["targets"])) for v in found]


def blocking_violations(page: Page) -> list[Violation]:
    """The serious and critical violations on the page."""
    return [v for v in violations(page) if v.impact in BLOCKING_IMPACTS]
