"""The report page (issue 20): its size, how long it takes to build, and how long it takes to
open in headless Chromium, for one experiment folder (the demo's, say).

    PYTHONPATH=src python -m benchmarks.report_html EXPERIMENT_DIR [--repeats 5] [--screenshot docs/report_screenshot.png]

The page is written to a temporary file (the folder is left as it is). Rows: its size (target
< 3 MB); its build seconds beside the PNG report's (``report.write_report`` into a temporary
folder, same process); the seconds from navigation to the first paint after the load event,
median of ``--repeats`` fresh tabs in one Debian Chromium (the browser's start is not counted),
beside an empty page's in the same browser (target < 2 s). ``--screenshot`` saves one 1200 x 900
view of the page (scrolled to ``--at``, a node of the first simulated cascade clicked when there
is one) as a palette PNG. Needs Chromium (``make browser``) and Playwright (the test extra).
Not part of `make bench`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import Row, parse_args, report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAINTED = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))"


def open_seconds(browser, url: str, repeats: int) -> tuple[float, float, list[str]]:
    """Median seconds to the first paint after load (wall clock, and the page's own clock), and
    the page's errors and requests other than the page itself."""
    wall, inside, problems = [], [], []
    for _ in range(repeats):
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != url else None)
        t = time.perf_counter()
        page.goto(url, wait_until="load")
        painted_ms = page.evaluate(PAINTED)
        wall.append(time.perf_counter() - t)
        inside.append(painted_ms / 1000)
        page.close()
    return statistics.median(wall), statistics.median(inside), problems


def screenshot(browser, url: str, path: Path, at: str) -> int:
    from PIL import Image
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url, wait_until="load")
    if page.locator(at).count():
        page.locator(at).first.evaluate("e => e.scrollIntoView()")
    node = page.locator("#tree-0-sim circle.node[data-i='1']")
    if node.count():
        node.click()
    png = Path(tempfile.mkdtemp()) / "shot.png"
    page.screenshot(path=str(png))
    page.close()
    Image.open(png).convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment_dir")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--screenshot", help="save one view of the page here (PNG)")
    ap.add_argument("--at", default="#cascades .example", help="the element the screenshot is scrolled to")
    a = parse_args(ap, argv, "bench_results/report_html.json")
    from playwright.sync_api import sync_playwright

    from simtune.report import write_report
    from simtune.report_html import write_html
    exp = Path(a.experiment_dir)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        page = write_html(exp, Path(tmp) / "report.html")
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        write_report(exp, Path(tmp) / "png_report")
        png_s = time.perf_counter() - t
        empty = Path(tmp) / "empty.html"
        empty.write_text("<!DOCTYPE html><html><head><meta charset=utf-8><title>empty</title></head><body></body></html>")
        with sync_playwright() as p:
            t = time.perf_counter()
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            launch_s = time.perf_counter() - t
            try:
                open_empty, _, _ = open_seconds(browser, empty.as_uri(), a.repeats)
                open_page, open_inside, problems = open_seconds(browser, page.path.as_uri(), a.repeats)
                shot = screenshot(browser, page.path.as_uri(), Path(a.screenshot), a.at) if a.screenshot else None
            finally:
                browser.close()
    res = {"experiment_dir": str(exp), "bytes": page.bytes, "sections": page.sections, "notes": page.notes,
           "build_s": build_s, "png_report_s": png_s, "browser_launch_s": launch_s, "open_s": open_page,
           "open_s_page_clock": open_inside, "open_empty_s": open_empty, "problems": problems, "repeats": a.repeats,
           "screenshot_bytes": shot}
    rows = [Row("report_html_bytes", f"report.html bytes [{exp.name}]", f"{page.bytes:,}", "", "", "< 3,000,000"),
            Row("report_html_build", "page build s vs the PNG report's (report/ folder; ratio: PNG / page)",
                f"{build_s:.2f}",
                f"{png_s:.2f}", f"{png_s / build_s:.1f}x" if build_s else "", ""),
            Row("report_html_open", f"open s to the first paint after load, headless Chromium, median of {a.repeats} "
                "(vs an empty page; ratio: page / empty)", f"{open_page:.3f}", f"{open_empty:.3f}", f"{open_page / open_empty:.1f}x",
                "< 2 s")]
    print(f"sections: {', '.join(page.sections)}; notes: {len(page.notes)}; browser start {launch_s:.2f} s (not "
          f"counted); page clock {open_inside:.3f} s" + (f"; screenshot {shot:,} bytes" if shot else ""))
    for n in page.notes:
        print(f"  page note: {n}")
    if problems:
        print(f"PROBLEMS: {problems}", file=sys.stderr)
    return report(res, rows, a.out) or (1 if problems else 0)


if __name__ == "__main__":
    raise SystemExit(main())
