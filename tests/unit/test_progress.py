"""Progress on any console: rich bars on a terminal, flushed lines elsewhere (SLURM, CI, pipes)."""

import io
import re
import sys

import pytest
from helpers.configs import QUARTER_LENGTHS
from pytorch_lightning.callbacks import RichProgressBar

from ecgexp import progress
from ecgexp.progress import CountLines, counting
from ecgexp.tasks.callbacks import EpochLines, TrainingProgress
from ecgexp.train import train

CLOCK = r"\d+:\d\d:\d\d"
# Two epochs of two batches: steps 2 and 4; val_auroc monitored (NaN while a label of the
# 36 validation exams has no positive).
EPOCH = re.compile(rf"epoch (\d)/2  steps (\d)  elapsed {CLOCK}  ETA {CLOCK}  "
                   rf"train_loss \d\.\d{{4}}  val_loss \d\.\d{{4}}  "
                   rf"val_auroc (\d\.\d{{4}}|nan) \(monitored(, best \d\.\d{{4}})?\)")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def plain_environment(monkeypatch):
    """No variable that makes rich decide otherwise than by stdout being a TTY."""
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def test_training_off_a_terminal_prints_a_line_per_epoch(compose_train, capsys,
                                                         plain_environment):
    cfg = compose_train("experiment=demo", QUARTER_LENGTHS, "dataset.n_exams=120",
                        "trainer.max_epochs=2",
                        "+trainer.limit_train_batches=2", "loader.num_workers=0",
                        "loader.batch_size=16", "dataset.split.val_fraction=0.3",
                        "dataset.split.test_fraction=0.3", "logger=none",
                        "task.monitor=val_auroc", "task.monitor_mode=max")
    train(cfg)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out  # no bar redrawn, no colours
    lines = out.splitlines()
    epochs = [match.groups()[:2] for line in lines if (match := EPOCH.fullmatch(line))]
    assert epochs == [("1", "2"), ("2", "4")], out
    assert "training  epochs 1-2  2 batches each" in lines
    assert any(re.fullmatch(rf"training done  epochs 2/2  elapsed {CLOCK}", line)
               for line in lines)
    predicted = [line for line in lines if line.startswith("predicting ")]
    # the splits as they were split: 120 exams, 30 % each to val and test
    assert [re.fullmatch(rf"predicting (val|test) (\d+)/\2 exams  elapsed {CLOCK}", line)[1]
            for line in predicted] == ["val", "test"], predicted


def test_the_rich_bar_on_a_terminal_lines_elsewhere(monkeypatch, plain_environment):
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert isinstance(TrainingProgress("val_loss", "min"), RichProgressBar)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert type(TrainingProgress("val_loss", "min")) is EpochLines
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's own override
    assert isinstance(TrainingProgress("val_loss", "min"), RichProgressBar)


def test_counted_work_prints_a_line_a_minute_and_the_last(monkeypatch, capsys,
                                                          plain_environment):
    now = iter([0, 10, 70, 80, 90,  # converting: created, then four advances
                0, 60,  # evaluating: a line per analysis
                0, 60])  # resumed with 6 of 10 done: the pace of this process's items
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(now))
    with counting("converting", 4, "records") as advance:
        for _ in range(4):
            advance()
    CountLines("evaluating", 2, "analyses", interval=0).advance(note="binary")
    CountLines("predicting", 10, "exams", completed=6).advance(2)
    with counting("hidden", 4, "records", show=False) as advance:
        advance(4)
    assert capsys.readouterr().out.splitlines() == [
        "converting 2/4 records  elapsed 0:01:10  ETA 0:01:10",
        "converting 4/4 records  elapsed 0:01:30",
        "evaluating 1/2 analyses (binary)  elapsed 0:01:00  ETA 0:01:00",
        "predicting 8/10 exams  elapsed 0:01:00  ETA 0:01:00"]
