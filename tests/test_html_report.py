"""The HTML report: offline, escaped, deterministic, and usable in a real browser.

Browser tests drive Debian's Chromium (/usr/bin/chromium, or the path in
VMSTATE_GUARD_CHROMIUM) through Playwright; .ci/run installs both. Without
them those tests are skipped with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import MINI, REPO, real_tree, run_cli

HOSTILE = REPO / "fixtures" / "hostile"
GOLDEN = REPO / "tests" / "golden"
ARTIFACTS = REPO / "test-artifacts"


def _html(tree: Path, tmp_path: Path, name: str = "report.html") -> Path:
    out = tmp_path / name
    result = run_cli("audit", str(tree), "--format", "html", "-o", str(out))
    assert result.returncode in (0, 1), result.stderr
    return out


def test_golden_report(tmp_path: Path, update_snapshots: bool) -> None:
    text = _html(MINI, tmp_path).read_text()
    golden = GOLDEN / "qemu-mini.html"
    if update_snapshots:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), "run pytest --update-snapshots to create tests/golden/qemu-mini.html"
    assert text == golden.read_text(), "report changed: review, then pytest --update-snapshots"


def test_csp_allows_only_the_page_own_script_and_style(tmp_path: Path) -> None:
    text = _html(MINI, tmp_path).read_text()
    (policy,) = [html.unescape(p) for p in re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)]
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    (script,) = re.findall(r"<script>(.*?)</script>", text, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", text, re.S)
    for body in (script, style):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "http://" not in text.replace("http-equiv", "") and "https://" not in text


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    text = _html(HOSTILE, tmp_path).read_text()
    assert text.count("<script") == 1
    assert "<img" not in text
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=" in text


def _chromium() -> str:
    path = os.environ.get("VMSTATE_GUARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("Chromium not installed (apt-get install chromium; .ci/run does)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')"
    )
    executable = _chromium()
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield launched
        launched.close()


class _Page:
    """A page with everything it logged and requested."""

    def __init__(self, browser: Any, path: Path, width: int = 1280, bypass_csp: bool = False) -> None:
        # bypass_csp: only to inject axe-core, which the report's own CSP rightly refuses.
        self.page = browser.new_page(viewport={"width": width, "height": 900}, bypass_csp=bypass_csp)
        self.console: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)

    def visible_details(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "details.subsection",
            "ds => ds.filter(d => !d.hidden).map(d => d.querySelector('summary code').textContent)",
        )

    def visible_rows(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "#subsections tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.cells[0].textContent)"
        )


def _screenshot(page: _Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / name), full_page=False)


def test_loads_offline_without_errors(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path))
    assert page.console == []
    assert page.requests == [page.url]
    assert page.page.title().startswith("vmstate-guard audit")


def test_verdict_filter_and_search(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path))
    assert len(page.visible_rows()) == 12
    page.page.select_option("#verdict-filter", "unchecked")
    assert sorted(page.visible_rows()) == ["cpu/exception_info", "cpu/msr_smi_count", "cpu/pdptrs", "cpu/xcr0"]
    assert page.page.text_content("#shown-count") == "4"
    page.page.select_option("#verdict-filter", "")
    page.page.fill("#search", "x-migrate")
    assert page.visible_rows() == ["cpu/msr_smi_count"]
    page.page.fill("#search", "kvm_cap_sregs2")
    assert page.visible_rows() == ["cpu/pdptrs"]


def test_search_filters_the_evidence_too(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path))
    assert len(page.visible_details()) == 12
    page.page.fill("#search", "x-migrate")
    assert page.visible_details() == ["cpu/msr_smi_count"]
    page.page.fill("#search", "")
    page.page.select_option("#verdict-filter", "unchecked")
    assert sorted(page.visible_details()) == sorted(page.visible_rows())


def test_sorting_and_rows_work_from_the_keyboard(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path))
    names = page.visible_rows()
    page.page.focus("#subsections th:nth-child(1) button")
    page.page.keyboard.press("Enter")
    assert page.visible_rows() == sorted(names, key=str.lower)
    page.page.keyboard.press("Space")
    assert page.visible_rows() == sorted(names, key=str.lower, reverse=True)
    # Tab from the last sort button reaches the first row's link; Enter opens its evidence.
    page.page.focus("#subsections th:nth-child(6) button")
    page.page.keyboard.press("Tab")
    focused = page.page.evaluate("document.activeElement.closest('tr').cells[0].textContent")
    assert focused == page.visible_rows()[0]
    page.page.keyboard.press("Enter")
    opened = page.page.locator("details.subsection[open] summary code")
    assert opened.count() == 1 and opened.text_content() == focused


def test_findings_link_to_their_evidence(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path))
    links = page.page.locator("#findings a.evidence-link")
    assert links.count() == 4  # qemu-mini's four VG001 findings
    links.nth(0).click()
    opened = page.page.locator("details.subsection[open] summary code")
    assert opened.count() == 1 and opened.text_content() == "cpu/msr_smi_count"


def _axe(browser: Any, report: Path, width: int) -> tuple[list[str], int]:
    """axe-core's violations on the report (every evidence chain open), and how
    far the page scrolls sideways."""
    script = os.environ.get("VMSTATE_GUARD_AXE")
    if not script or not Path(script).is_file():
        pytest.skip("axe-core not installed (scripts/fetch-test-tools.sh; .ci/run does)")
    page = _Page(browser, report, width=width, bypass_csp=True)
    page.page.add_script_tag(path=script)
    page.page.evaluate("for (const d of document.querySelectorAll('details')) d.open = true")
    result = page.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    violations = [f"{v['id']}: {v['help']} ({v['nodes'][0]['target']})" for v in result["violations"]]
    overflow = page.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return violations, overflow


@pytest.mark.parametrize("width", [390, 1280])
def test_axe_core_finds_nothing_and_nothing_scrolls_sideways(browser: Any, tmp_path: Path, width: int) -> None:
    violations, overflow = _axe(browser, _html(MINI, tmp_path), width)
    assert violations == []  # heading-order, scrollable-region-focusable, colour contrast, ...
    assert overflow == 0


def test_axe_core_on_the_real_10_report(browser: Any, tmp_path: Path) -> None:
    violations, overflow = _axe(browser, _html(real_tree("10"), tmp_path, "qemu-10.0.html"), 390)
    assert violations == []
    assert overflow == 0


def test_sorting_by_a_column(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path))
    page.page.click("#subsections th:nth-child(1) button")
    names = page.visible_rows()
    assert names == sorted(names, key=str.lower)
    page.page.click("#subsections th:nth-child(1) button")
    assert page.visible_rows() == list(reversed(names))


def test_hostile_fixture_runs_no_injected_script(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(HOSTILE, tmp_path))
    page.page.click("#subsections tbody tr")
    assert page.page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []
    assert page.requests == [page.url]
    text = page.page.inner_text("body")
    assert "</script><script>window.__pwned='name'</script>" in text
    assert "javascript:window.__pwned='probe'" in text
    assert "error_report(\"<script>window.__pwned='string'</script> javascript:alert(1)\");" in text
    assert [m for m in page.console if "Content Security Policy" in m] == []


def test_narrow_window_and_print(browser: Any, tmp_path: Path) -> None:
    page = _Page(browser, _html(MINI, tmp_path), width=420)
    hidden = page.page.eval_on_selector("th.wide", "th => getComputedStyle(th).display")
    assert hidden == "none"
    _screenshot(page, "report-narrow.png")
    page.page.emulate_media(media="print")
    assert page.page.eval_on_selector(".controls", "c => getComputedStyle(c).display") == "none"
    pdf = page.page.pdf()
    assert pdf.startswith(b"%PDF")


def test_real_10_msr_smi_count_detail(browser: Any, tmp_path: Path) -> None:
    tree = real_tree("10")
    page = _Page(browser, _html(tree, tmp_path, "qemu-10.0.html"))
    assert page.console == []
    page.page.fill("#search", "msr_smi_count")
    page.page.click("#subsections tbody tr:not([hidden])")
    detail = page.page.locator("details.subsection[open]")
    assert detail.count() == 1
    text = detail.inner_text()
    for expected in ("has_msr_smi_count", "MSR_SMI_COUNT", "x-migrate-smi-count", "pc_compat_2_11"):
        assert expected in text
    assert detail.locator("svg.chain").is_visible()
    _screenshot(page, "report-qemu-10.0-msr_smi_count.png")


def test_every_finding_is_listed(tmp_path: Path) -> None:
    loader = REPO / "fixtures" / "qemu-loader"
    text = _html(loader, tmp_path).read_text()
    section = text[text.index('<section id="findings">') : text.index('<section id="table">')]
    for rule, where in (("VG002", "hw/misc/foo.c:30"), ("VG003", "hw/misc/foo.c:47"), ("VG003", "hw/misc/foo.c:60")):
        assert rule in section and where in section
