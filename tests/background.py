"""A subprocess the suite starts now and reads later (the package-less interpreter, the shared 2-process launch, the
walk over the smoke bench's folders): it runs while the rest of the suite goes on."""

from __future__ import annotations

import subprocess
from pathlib import Path


class BackgroundProcess:
    """`command` started at once; its stdout and stderr go to `log_path`."""

    def __init__(self, command: list[str], log_path: Path, **popen_kwargs):
        self.log_path = log_path
        with open(log_path, "w") as log:  # the child keeps its own copy of the file descriptor
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, **popen_kwargs)

    def finish(self, timeout: float) -> str:
        """Wait for it (killed after `timeout` seconds) and say how it ended."""
        try:
            return f"exited with {self.process.wait(timeout=timeout)}"
        except subprocess.TimeoutExpired:
            self.close()
            return f"timed out after {timeout} s"

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        """Stop it if nobody waited for it (a session stopped early, `-x`)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
