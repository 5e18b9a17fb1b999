"""Run one pipeline stage as a child process: full output to a log file, short progress lines on screen.

nnU-Net's commands print a lot (and tqdm bars); the demo keeps all of it in one log per stage and
shows only the lines that tell how far a stage is, so a long CPU run never looks stuck.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

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
        self._lock = threading.Lock()

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

    def run(self, key: str, title: str, command: list[str], env: Optional[dict[str, str]] = None) -> None:
        """Run `command`, teeing its output to logs/<n>_<key>.log; StageError if it fails."""
        self.run_together(title, {key: command}, env)

    def run_together(self, title: str, commands: dict[str, list[str]], env: Optional[dict[str, str]] = None) -> None:
        """One stage of several child processes at once (logs/<n>_<key>.log each, progress lines prefixed with
        the key when there are several); `env` adds to the shared environment. StageError names every failure."""
        start = self.announce(title)
        prefix = len(commands) > 1
        children = [_Child(key, command, self.log_folder / f"{self.index:02d}_{key}.log", {**self.env, **(env or {})},
                           self.log_folder.parent, self._progress(key if prefix else "")) for key, command in
                    commands.items()]
        try:
            codes = [child.wait() for child in children]
        except KeyboardInterrupt:
            for child in children:
                child.stop()
            raise
        failed = [f"stage '{title}' ({child.key}) failed with exit code {code}\n{_tail(child.log_path)}\n"
                  f"full log: {child.log_path}" for child, code in zip(children, codes) if code != 0]
        if failed:
            raise StageError("\n".join(failed))
        for child in children:
            self.timings[child.key] = child.seconds
        print(f"    done in {format_seconds(time.perf_counter() - start)}", flush=True)

    def _progress(self, prefix: str) -> Callable[[str], None]:
        def show(text: str) -> None:
            with self._lock:
                print(f"    {self.elapsed():>12} | {prefix + ': ' if prefix else ''}{text[:150]}", flush=True)
        return show


class _Child:
    """A child process whose output a thread copies into its log, passing progress lines to `show`; `seconds` is
    its run time once it has ended.

    The child leads a process group of its own: when it ends, whatever it left behind in that group (nnU-Net's
    data-augmentation and export workers, orphaned if the child was killed) is ended too. Those processes hold
    the output pipe, so the copying thread, and the demo, would otherwise wait for them forever."""

    def __init__(self, key: str, command: list[str], log_path: Path, env: dict[str, str], cwd: Path,
                 show: Callable[[str], None]):
        self.key, self.log_path = key, log_path
        print(f"    $ {shlex.join(command)}\n    log: {log_path}", flush=True)
        self.log = open(log_path, "w", encoding="utf-8")
        self.log.write(f"$ {shlex.join(command)}\n")
        self.log.flush()
        self.started, self.seconds = time.perf_counter(), 0.0
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        errors="replace", env=env, cwd=cwd, bufsize=1, start_new_session=True)
        self.reader = threading.Thread(target=self._copy, args=(show,), daemon=True)
        self.reader.start()

    def _copy(self, show: Callable[[str], None]) -> None:
        for line in self.process.stdout:  # text mode splits on \r too, so tqdm bars become lines
            self.log.write(line)
            text = _TIMESTAMP.sub("", line.strip())
            if text and PROGRESS.search(text):
                show(text)
        self.seconds = time.perf_counter() - self.started  # the output ends when the process does

    def wait(self) -> int:
        code = self.process.wait()
        self._end_group(signal.SIGKILL)
        self.reader.join()
        self.log.close()
        return code

    def stop(self) -> None:
        self._end_group(signal.SIGTERM)
        self.wait()

    def _end_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):  # the group is already gone
            pass


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(f"  | {line}" for line in text[-lines:])


def console_script(name: str) -> str:
    """Path of an installed console script, preferring the one beside this Python interpreter."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found:
        return found
    raise StageError(f"command {name} not found beside {sys.executable} or on PATH: is nnunetv2 installed?")
