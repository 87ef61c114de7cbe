"""Screenshot the demo page with a headless Chromium: `python spaces/clipzoo-demo/screenshot.py [--output PATH]`.

Launches the app on 127.0.0.1 (a free port), then runs Debian's `chromium` (or `chromium-browser`, or `$CHROMIUM`)
with `--headless --screenshot`. The tests use `dump_dom` from here to check the rendered page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE.parents[1] / "docs" / "space" / "screenshot.png"
# Gradio renders the page with JavaScript after load: the virtual time budget lets it finish before the capture.
RENDER_BUDGET_MS = 20000


def find_chromium() -> str | None:
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser"]
    return next((path for path in map(lambda c: c and shutil.which(c), candidates) if path), None)


def chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("No `chromium` on PATH (Debian: `apt-get install chromium`), nor $CHROMIUM.")
    with tempfile.TemporaryDirectory(prefix="clipzoo-chromium-") as profile:
        command = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--virtual-time-budget={RENDER_BUDGET_MS}", *args,
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(url: str) -> str:
    """The page's DOM after its scripts ran."""
    return chromium(["--dump-dom", url]).stdout


def screenshot(url: str, output: str | os.PathLike, width: int = 1280, height: int = 1100) -> Path:
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    chromium([f"--screenshot={output}", f"--window-size={width},{height}", url])
    if not output.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {output}.")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from app import build_demo

    demo = build_demo()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        print(screenshot(demo.local_url, args.output))
    finally:
        demo.close()


if __name__ == "__main__":
    main()
