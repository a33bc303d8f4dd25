"""What a person watching a reward run sees: a rich progress bar with pairs/s and the loss."""

from __future__ import annotations


class ProgressDisplay:
    """A rich progress bar with pairs/s and the loss, for a person watching; silent when disabled."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("reward model"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[loss]}"),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task("train", total=total, completed=done, speed="", loss="")
        self.progress.start()

    def advance(self, pairs_per_s: float, loss: float | None, *, refresh_only: bool = False) -> None:
        if self.progress is None:
            return
        fields = {"speed": f"{pairs_per_s:.1f} pairs/s", "loss": f"loss {loss:.4f}" if loss is not None else ""}
        self.progress.update(self.task, advance=0 if refresh_only else 1, **fields)

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
