"""Progress output: a bar on a terminal, plain periodic lines in a log file, nothing with -q."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.cli import main
from darkflow.progress import progress_bar


def fake_clock(bar) -> dict[str, float]:
    """Drive the bar's tqdm clock by hand (tqdm's own tests do the same through ``_time``)."""
    clock = {"t": 0.0}
    bar._time = lambda: clock["t"]
    bar.start_t = bar.last_print_t = 0.0
    return clock


def ema_rate(intervals: list[tuple[int, float]], alpha: float = 0.3) -> float:
    """tqdm's smoothed rate, computed independently: bias-corrected exponential moving averages of the events
    and of the seconds between two printed lines."""
    dn = dt = 0.0
    for events, seconds in intervals:
        dn = alpha * events + (1 - alpha) * dn
        dt = alpha * seconds + (1 - alpha) * dt
    return dn / dt  # the bias corrections of dn and dt are equal and cancel


def lines(text: str) -> list[str]:
    assert "\r" not in text and (text == "" or text.endswith("\n"))
    return text.splitlines()


def test_log_lines_every_interval_with_rate_and_eta(monkeypatch, capsys):
    monkeypatch.delenv("DARKFLOW_PROGRESS_INTERVAL", raising=False)  # the default: 30 s
    bar = progress_bar("generate qcd (1/8)", 1000)
    clock = fake_clock(bar)
    steps = [(10, 100), (40, 300), (50, 100), (70, 350), (90, 100), (100, 50)]
    for t, n in steps:
        clock["t"] = t
        bar.update(n)
    bar.close()
    rate = ema_rate([(400, 40.0), (450, 30.0)])
    eta = 150 / rate
    assert lines(capsys.readouterr().err) == [
        "generate qcd (1/8): starting, 1000 events",
        "generate qcd (1/8): 400/1000 events (40%), 10 events/s, ETA 01:00",
        f"generate qcd (1/8): 850/1000 events (85%), {rate:.0f} events/s, ETA 00:{int(eta):02d}",
        "generate qcd (1/8): 1000/1000 events (100%), 10 events/s, done in 01:40",
    ]


def test_interval_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("DARKFLOW_PROGRESS_INTERVAL", "0")
    with progress_bar("prepare sm.h5", 40) as bar:
        for _ in range(4):
            bar.update(10)
    out = lines(capsys.readouterr().err)
    assert out[0] == "prepare sm.h5: starting, 40 events" and out[-1].startswith("prepare sm.h5: 40/40 events (100%)")
    assert [line.split(": ")[1].split(" ")[0] for line in out[1:-1]] == ["10/40", "20/40", "30/40"]
    assert all("events/s, ETA " in line for line in out[1:-1])
    monkeypatch.setenv("DARKFLOW_PROGRESS_INTERVAL", "5")
    bar = progress_bar("x", 100)
    clock = fake_clock(bar)
    for t in range(1, 12):
        clock["t"] = t
        bar.update(1)
    assert [line.split(": ")[1].split(" ")[0] for line in lines(capsys.readouterr().err)] == ["starting,", "5/100",
                                                                                               "10/100"]


def test_unknown_total_stops_and_silence(monkeypatch, capsys):
    monkeypatch.setenv("DARKFLOW_PROGRESS_INTERVAL", "0")
    bar = progress_bar("jetimages", None)
    clock = fake_clock(bar)
    clock["t"] = 2
    bar.update(50)
    bar.close()
    assert lines(capsys.readouterr().err) == ["jetimages: starting", "jetimages: 50 events, 25 events/s",
                                              "jetimages: 50 events, 25 events/s, done in 00:02"]
    with pytest.raises(KeyError), progress_bar("generate ttbar", 100) as bar:
        bar.update(30)
        raise KeyError  # the command's one-line error follows: no end line
    out = lines(capsys.readouterr().err)
    assert out[0] == "generate ttbar: starting, 100 events" and len(out) == 2
    assert out[1].startswith("generate ttbar: 30/100 events (30%), ")
    bar = progress_bar("prepare x.h5", 100)
    bar.update(40)
    bar.close()
    assert lines(capsys.readouterr().err)[-1].startswith("prepare x.h5: stopped at 40/100 events (40%) after ")
    with pytest.raises(KeyError), progress_bar("prepare nan.h5", 20):
        raise KeyError  # bad input found before any event went through: the error is the only line
    assert capsys.readouterr().err == ""
    for bar in (progress_bar("quiet", 10, enabled=False), progress_bar("train epoch 1/3", 10, ends=False)):
        bar.update(10)
        bar.close()
    assert capsys.readouterr().err == ""  # ends=False: no start or end line, and 10/10 is no periodic line


def test_bad_interval_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    for value in ("soon", "-1", "inf"):
        monkeypatch.setenv("DARKFLOW_PROGRESS_INTERVAL", value)
        assert main(["generate", "--process", "ttbar", "--events", "5", "--out", str(tmp_path / "gen")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "DARKFLOW_PROGRESS_INTERVAL" in err and ">= 0" in err
        assert not (tmp_path / "gen").exists()


TERMINAL = """
import fcntl, os, pty, struct, subprocess, sys, termios
master, slave = pty.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
code = "from darkflow.progress import progress_bar\\nwith progress_bar('generate qcd', 30) as b:\\n    b.update(30)"
proc = subprocess.Popen([sys.executable, "-c", code], stderr=slave)
os.close(slave)
chunks = []
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    chunks.append(chunk)
proc.wait()
sys.stdout.write(repr(b"".join(chunks).decode()))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without tqdm's own settings (``TQDM_DISABLE``, ... ; a test in-process may leave them)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}, **extra}


def test_terminal_gets_a_tqdm_bar():
    done = subprocess.run([sys.executable, "-c", TERMINAL], capture_output=True, text=True, timeout=60,
                          env=clean_env())
    text = eval(done.stdout)  # the repr of what the terminal received
    assert "\r" in text and "generate qcd: 100%|" in text and "30/30 events" in text and "events/s" in text
    assert "starting" not in text


def sm_file(tmp_path):
    from darkflow.data_prep.prepare import PrepareConfig, prepare

    src = write_tree(tmp_path / "sm.root", random_nanoaod(np.random.default_rng(0), 300))
    prepare(PrepareConfig(inputs=[str(src)], out=str(tmp_path / "sm.h5"), label="sm"), progress=False)
    return tmp_path / "sm.h5"


def run_logged(tmp_path, argv: list[str], interval: str) -> tuple[str, str]:
    """Run ``darkflow ARGV`` with standard output and error going to files, as in a batch job."""
    env = clean_env(DARKFLOW_PROGRESS_INTERVAL=interval)
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        done = subprocess.run([sys.executable, "-m", "darkflow", *argv], stdout=out, stderr=err, env=env, timeout=600)
    stdout, stderr = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert done.returncode == 0, stderr[-2000:]
    return stdout, stderr


@pytest.mark.slow
def test_generate_writes_lines_to_a_log(tmp_path):
    _, err = run_logged(tmp_path, ["generate", "--process", "ttbar,wjets", "--events", "30", "--out",
                                   str(tmp_path / "gen")], "0")
    out = lines(err)
    for k, name in enumerate(["ttbar", "wjets"], 1):
        mine = [line for line in out if line.startswith(f"generate {name} ({k}/2): ")]
        assert mine[0] == f"generate {name} ({k}/2): starting, 30 events"
        assert [line.split(": ")[1].split(" ")[0] for line in mine[1:-1]] == ["10/30", "20/30"]
        assert all(", ETA " in line and " events/s" in line for line in mine[1:-1])
        assert mine[-1].startswith(f"generate {name} ({k}/2): 30/30 events (100%), ") and " done in " in mine[-1]
    assert len(out) == 8
    _, err = run_logged(tmp_path, ["generate", "--process", "ttbar", "--events", "5", "--out", str(tmp_path / "q"),
                                   "-q"], "0")
    assert err == ""


TRAIN = ["--model", "density", "--epochs", "3", "--batch-size", "64", "--accelerator", "cpu",
         "--set", 'model.flow_options={"num_layers": 1, "hidden_features": 8}']


@pytest.mark.slow
def test_training_log_has_one_line_per_epoch(tmp_path):
    data = sm_file(tmp_path)
    out, err = run_logged(tmp_path, ["train", "--data", str(data), "--out", str(tmp_path / "a"), *TRAIN], "600")
    assert out.splitlines()[0].startswith("torch threads: ")
    warnings = [line for line in lines(err) if line.startswith("darkflow train: warning: ")]
    log = [line for line in lines(err) if line not in warnings]
    # 3 epochs are too few for this run to converge, and train says so once, after the progress lines
    assert len(warnings) == 1 and "not converged" in warnings[0] and lines(err)[-1] == warnings[0]
    # 300 events: 240 train in batches of 64, the partial one dropped
    assert log[0] == "train: at most 3 epoch(s) of 3 batches" and log[-1].startswith("train: 3 epoch(s) in ")
    assert len(log) == 5
    for i, line in enumerate(log[1:-1], 1):
        assert line.startswith(f"train epoch {i}/3: train loss ") and ", validation loss " in line
        assert " events/s, elapsed " in line and ", ETA " in line
    with open(tmp_path / "a" / "metrics.csv") as handle:
        val = [float(row.split(",")[3]) for row in handle.read().splitlines()[1:]]
    assert [float(line.split("validation loss ")[1].split(",")[0]) for line in log[1:-1]] == pytest.approx(val, 1e-4)
    # with lines as often as possible, every batch but the last of an epoch (the epoch line) gets one
    _, err = run_logged(tmp_path, ["train", "--data", str(data), "--out", str(tmp_path / "b"), *TRAIN], "0")
    within = [line for line in lines(err) if " batches (" in line]
    assert len(within) == 3 * 2 and all(" batches/s, ETA " in line for line in within)
