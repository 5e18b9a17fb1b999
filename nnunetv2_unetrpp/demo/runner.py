"""Run one pipeline stage as a child process: full output to a log file, short progress lines on screen.

nnU-Net's commands print a lot (and tqdm bars); the demo keeps all of it in one log per stage and
shows only the lines that tell how far a stage is, so a long CPU run never looks stuck.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: Child-output lines worth showing while a stage runs (nnU-Net training/prediction milestones).
PROGRESS = re.compile(
    r"(Epoch \d+$|Epoch time|train_loss|val_loss|Pseudo dice|Mean Validation Dice|predicting |"
    r"Predicting |Preprocessing dataset|Fingerprint extraction|Experiment planning|wrote |error|Error)")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ")


class StageError(RuntimeError):
    """A stage's child process failed; the message names the stage, exit code and log."""


def format_seconds(seconds: float) -> str:
    """`1 min 05 s` style duration."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class Runner:
    """Runs stages in order with a shared environment, numbering them and timing everything."""

    def __init__(self, log_folder: Path, env: dict[str, str], total_stages: int):
        self.log_folder, self.env, self.total = log_folder, env, total_stages
        self.started = time.perf_counter()
        self.index = 0
        self.timings: dict[str, float] = {}

    def elapsed(self) -> str:
        """Time since the demo started."""
        return format_seconds(time.perf_counter() - self.started)

    def announce(self, title: str) -> float:
        """Print the header of the next stage; returns its start time."""
        self.index += 1
        print(f"[{self.index}/{self.total}] {title}  (elapsed {self.elapsed()})", flush=True)
        return time.perf_counter()

    def finish(self, key: str, start: float) -> None:
        """Record and print a stage's duration."""
        self.timings[key] = time.perf_counter() - start
        print(f"    done in {format_seconds(self.timings[key])}", flush=True)

    def run(self, key: str, title: str, command: list[str]) -> None:
        """Run `command`, teeing its output to logs/<n>_<key>.log; StageError if it fails."""
        start = self.announce(title)
        log_path = self.log_folder / f"{self.index:02d}_{key}.log"
        print(f"    $ {shlex.join(command)}\n    log: {log_path}", flush=True)
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {shlex.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       errors="replace", env=self.env, cwd=self.log_folder.parent, bufsize=1)
            try:
                for line in process.stdout:  # text mode splits on \r too, so tqdm bars become lines
                    log.write(line)
                    text = _TIMESTAMP.sub("", line.strip())
                    if text and PROGRESS.search(text):
                        print(f"    {self.elapsed():>12} | {text[:150]}", flush=True)
                code = process.wait()
            except KeyboardInterrupt:
                process.terminate()
                process.wait()
                raise
        if code != 0:
            raise StageError(f"stage '{title}' failed with exit code {code}\n{_tail(log_path)}\n"
                             f"full log: {log_path}")
        self.finish(key, start)


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(f"  | {line}" for line in text[-lines:])


def console_script(name: str) -> str:
    """Path of an installed console script, preferring the one beside this Python interpreter."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found:
        return found
    raise StageError(f"command {name} not found beside {sys.executable} or on PATH: is nnunetv2 installed?")
