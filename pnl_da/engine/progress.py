"""How far a run is, for whoever reads its output.

On a terminal: tqdm's bar. Elsewhere (a file, a pipe, CI logs, nohup, a Slurm output file) a
bar's carriage returns are noise and tqdm would print nothing useful, so a plain line is
written at each evaluation and at least every ``EVERY_S`` seconds: step, speed, time left,
the last loss and the last score.
"""

from __future__ import annotations

import sys
import time

EVERY_S = 60.0  # the longest silence on a non-terminal output


def duration(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 03m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def score_text(evaluation: dict | None, predict: str) -> str | None:
    """The last evaluation's score: accuracy where the scored images have labels, else SND."""
    if evaluation is None:
        return None
    if evaluation["heads"]:
        return f"acc {evaluation['heads'][predict]['accuracy']:.2f}%"
    return f"snd {evaluation['validation']['snd']:.3f}"


class Progress:
    """A bar on a terminal, lines elsewhere; nothing where ``show`` is false."""

    def __init__(self, show: bool, total: int, step: int, name: str, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        terminal = show and self.stream.isatty()
        self.lines = show and not terminal
        self.total = total
        self.first_step, self.started = step, time.monotonic()
        self.last_line = self.started
        self.bar = None
        if terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=step, file=self.stream, dynamic_ncols=True,
                            desc=name, leave=True, mininterval=1.0)

    def due(self) -> bool:
        """Whether a line is owed: nothing was written for ``EVERY_S`` seconds."""
        return self.lines and time.monotonic() - self.last_line >= EVERY_S

    def update(self, step: int, loss, score: str | None) -> None:
        """Move the bar (a terminal only). ``loss``: a number, a tensor or None."""
        if self.bar is None:
            return
        loss = None if loss is None else float(loss)
        self.bar.update(step - self.bar.n)
        shown = {"loss": f"{loss:.3f}" if loss is not None else "-"}
        if score is not None:
            key, _, value = score.partition(" ")
            shown[key] = value
        self.bar.set_postfix(shown, refresh=False)

    def line(self, step: int, loss, score: str | None) -> None:
        """One line (not on a terminal): where the run is and when it will end."""
        if not self.lines:
            return
        loss = None if loss is None else float(loss)
        now = time.monotonic()
        elapsed, done = now - self.started, step - self.first_step
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        parts = [f"{rate:.1f} steps/s" if rate else "- steps/s",
                 f"{duration((self.total - step) / rate)} left" if rate else "time left -",
                 f"loss {loss:.4f}" if loss is not None else "loss -"]
        if score is not None:
            parts.append(score)
        print(f"step {step}/{self.total} ({100 * step / max(1, self.total):.0f}%): "
              + ", ".join(parts), file=self.stream, flush=True)
        self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
