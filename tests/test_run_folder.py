"""The run folder as a transaction (rundir.RunFolder, files.py): a new run is built beside --out
and renamed into place when complete, so a failure at any point leaves the old run byte for byte;
one writer at a time (a lock beside the folder); what a killed writer left is cleaned or resumed."""
import contextlib
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nanorec.cli import main as cli_main
from nanorec.data.synthetic import write_csv
from tests.conftest import snapshot

TINY = ["max_steps=4", "eval_interval=2", "checkpoint_interval=2", "n_embd=16", "n_layer=1", "n_head=1",
        "progress=false", "warmup_steps=1", "batch_size=8", "block_size=8", "threads=1"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def run_cli(argv):
    """(exit status, stderr lines) of `nanorec ARGV` run in-process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(list(argv))
    return code, [ln for ln in err.getvalue().splitlines() if ln.strip()]


def cli_cmd(*argv):
    return [sys.executable, "-m", "nanorec.cli", *argv]


def child_env(**extra):
    return {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """A data file and a finished run trained on it (copied per test: the run an --overwrite must keep)."""
    root = tmp_path_factory.mktemp("runfolder")
    data = write_csv(str(root / "log.csv"), num_users=80, num_items=20, seed=1)
    run = str(root / "run")
    assert run_cli(["train", "--data", data, "--out", run, "--quiet", *TINY])[0] == 0
    return data, run


def copy_old(old, tmp_path):
    data, run = old
    dst = str(tmp_path / "run")
    shutil.copytree(run, dst)
    return data, dst


# -----------------------------------------------------------------------------
# a full disk during --overwrite

def count_fsyncs(monkeypatch, argv):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    assert run_cli(argv)[0] == 0
    monkeypatch.setattr(os, "fsync", real)
    return len(calls)


@pytest.mark.slow
def test_a_full_disk_at_any_write_of_an_overwrite_keeps_the_old_run_byte_identical(old, tmp_path, monkeypatch):
    """Every file of a run reaches the disk through files.atomic_write's fsync; the disk fills up
    at the 1st, 2nd, ... of them (ENOSPC, as a full disk reports it at fsync): each time the
    command fails in one line, the old run is unchanged, and no lock or temporary file is left."""
    data, run = copy_old(old, tmp_path)
    before = snapshot(run)
    argv = ["train", "--data", data, "--out", run, "--overwrite", "--quiet", *TINY, "seed=9"]
    total = count_fsyncs(monkeypatch, ["train", "--data", data, "--out", str(tmp_path / "probe"), "--quiet",
                                       *TINY, "seed=9"])
    shutil.rmtree(tmp_path / "probe")
    assert total >= 10  # config, items, data, histories, weights, checkpoints, fusion, metrics...
    real = os.fsync
    for fail_at in range(1, total + 1):
        calls = []

        def full_disk(fd):
            calls.append(fd)
            if len(calls) >= fail_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)

        monkeypatch.setattr(os, "fsync", full_disk)
        code, lines = run_cli(argv)
        monkeypatch.setattr(os, "fsync", real)
        assert code == 2 and len(lines) == 1, (fail_at, lines)
        assert "No space left on device" in lines[0] and "internal error" not in lines[0], lines
        assert snapshot(run) == before, f"the old run changed when the disk filled at write {fail_at}"
        left = sorted(os.listdir(tmp_path))
        assert not [n for n in left if n.endswith((".lock", ".tmp"))], left
        # the new run stays beside the old one only once it has a checkpoint to --resume from
        hidden = [n for n in left if n.startswith(".run.nanorec-new-")]
        assert all(os.path.exists(os.path.join(tmp_path, n, "run", "ckpt.pt")) for n in hidden), (fail_at, left)
    # room again: --resume finishes the interrupted --overwrite, which replaces the old run only now
    assert hidden, "the last failure came after a checkpoint"
    code, lines = run_cli(["train", "--out", run, "--resume", "--quiet"])
    assert code == 0, lines
    assert snapshot(run) != before and sorted(os.listdir(tmp_path)) == ["run"]
    assert '"seed": 9' in open(os.path.join(run, "config.json")).read()
    log = open(os.path.join(run, "train.log")).read()  # the interrupted run's log, continued
    assert "resumed from step" in log and log.count(f": renamed to {run} when complete") == 2, log


@pytest.mark.parametrize("command", ["tune", "synth"])
def test_a_full_disk_is_one_line_for_tune_and_synth_and_keeps_what_was_there(old, tmp_path, monkeypatch, command):
    data = old[0]
    mine = tmp_path / "mine.csv"
    mine.write_text("user_id,item_id,timestamp\n1,2,3\n")
    argv = {"tune": ["tune", "--data", data, "--out", str(tmp_path / "study"), "method=popularity"],
            "synth": ["synth", "--out", str(mine), "--rows", "100", "--overwrite"]}[command]
    before = snapshot(str(tmp_path))

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    code, lines = run_cli(argv)
    monkeypatch.undo()
    assert code == 2 and len(lines) == 1 and "No space left on device" in lines[0], lines
    after = snapshot(str(tmp_path))
    assert {k: v for k, v in after.items() if not k.startswith("study")} == before  # the study's own folder aside
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], os.listdir(tmp_path)


@pytest.mark.subprocess
def test_a_file_size_limit_inside_safetensors_is_one_line_and_keeps_the_old_run(old, tmp_path):
    """A real write failure inside a library's own writer (safetensors, in Rust: "File too large"
    from RLIMIT_FSIZE, no patching) is a DataError naming the file, not an internal error."""
    import resource
    data, run = copy_old(old, tmp_path)
    before = snapshot(run)
    weights = os.path.getsize(os.path.join(run, "model.safetensors"))

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (weights // 2, weights // 2))

    p = subprocess.run(cli_cmd("train", "--data", data, "--out", run, "--overwrite", "--quiet", *TINY),
                       capture_output=True, text=True, preexec_fn=small_files, env=child_env())
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "File too large" in lines[0] and "model.safetensors" in lines[0], lines
    assert snapshot(run) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]  # failed before its first checkpoint: nothing left


@contextlib.contextmanager
def read_only(folder):
    """`folder` made read-only for this process: by its permissions, or, for root (whom
    permissions do not bind), by a read-only bind mount of it; skipped where neither works."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode != 0:
        pytest.skip("running as root without a way to make a folder read-only (mount)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", folder, folder], capture_output=True).returncode != 0:
            pytest.skip("running as root without a way to make a folder read-only (remount)")
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


@pytest.mark.parametrize("command", ["train", "tune", "synth"])
def test_a_read_only_folder_is_one_line_and_changes_nothing(old, tmp_path, command):
    data, run = copy_old(old, tmp_path / "runs")
    parent = str(tmp_path / "runs")
    if command == "synth":
        open(os.path.join(parent, "log.csv"), "w").write("mine\n")
    argv = {"train": ["train", "--data", data, "--out", run, "--overwrite", "--quiet", *TINY],
            "tune": ["tune", "--data", data, "--out", os.path.join(parent, "study"), "method=popularity"],
            "synth": ["synth", "--out", os.path.join(parent, "log.csv"), "--rows", "100", "--overwrite"]}[command]
    before = snapshot(parent)
    with read_only(parent):
        code, lines = run_cli(argv)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"nanorec {command}: error: ") and parent in lines[0], lines
    assert "Permission denied" in lines[0] or "Read-only file system" in lines[0], lines
    assert snapshot(parent) == before


# -----------------------------------------------------------------------------
# one writer at a time

def wait_for(condition, what, proc, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the first run ended before {what}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_second_writer_is_refused_and_a_killed_writers_lock_and_folder_are_taken_over(old, tmp_path):
    data = old[0]
    run = str(tmp_path / "run")
    lock = str(tmp_path / ".run.lock")
    first = subprocess.Popen(cli_cmd("train", "--data", data, "--out", run, "--quiet", "n_embd=16", "n_layer=1",
                                     "n_head=1", "block_size=8", "batch_size=8", "threads=1", "progress=false",
                                     "max_steps=1000000", "eval_interval=1000000", "checkpoint_interval=5"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    try:
        def checkpointed():
            return any(os.path.exists(os.path.join(tmp_path, n, "run", "ckpt.pt"))
                       for n in os.listdir(tmp_path) if n.startswith(".run.nanorec-new-"))
        wait_for(checkpointed, "checkpoint", first)
        assert open(lock).read().strip() == str(first.pid)

        for extra in ([], ["--overwrite"]):  # a second writer, fresh or replacing: refused, naming the first
            code, lines = run_cli(["train", "--data", data, "--out", run, "--quiet", *TINY, *extra])
            assert code == 2 and len(lines) == 1, lines
            assert f"--out {run}: in use by process {first.pid}" in lines[0], lines
        assert not os.path.exists(run)  # the first run is not complete: nothing at --out yet
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    # the killed run's lock file and its checkpointed folder are still there
    assert os.path.exists(lock) and open(lock).read().strip() == str(first.pid)
    code, lines = run_cli(["train", "--data", data, "--out", run, "--quiet", *TINY])
    assert code == 2 and "interrupted" in lines[0] and "--resume" in lines[0], lines  # not silently discarded
    code, lines = run_cli(["train", "--data", data, "--out", run, "--quiet", "--overwrite", *TINY])
    assert code == 0, lines
    log = open(os.path.join(run, "train.log")).read()
    assert f"took over the lock of process {first.pid}" in log
    assert f"removed the unfinished folder that process {first.pid} left" in log
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no lock, no hidden folder
    assert os.path.exists(os.path.join(run, "metrics.json"))


def test_overwrite_replaces_the_folder_whole_so_other_files_are_refused(old, tmp_path):
    data, run = copy_old(old, tmp_path)
    with open(os.path.join(run, "notes.txt"), "w") as f:
        f.write("mine\n")
    before = snapshot(run)
    code, lines = run_cli(["train", "--data", data, "--out", run, "--overwrite", "--quiet", *TINY])
    assert code == 2 and len(lines) == 1 and "notes.txt" in lines[0] and "--overwrite" in lines[0], lines
    assert snapshot(run) == before
    os.remove(os.path.join(run, "notes.txt"))
    code, lines = run_cli(["train", "--data", data, "--out", run, "--overwrite", "--quiet", *TINY, "seed=5"])
    assert code == 0, lines
    assert '"seed": 5' in open(os.path.join(run, "config.json")).read()
    assert sorted(os.listdir(tmp_path)) == ["run"]


# -----------------------------------------------------------------------------
# a killed atomic write (recommend's output)

@pytest.mark.subprocess
def test_the_temporary_file_of_a_killed_write_is_removed_by_the_next_write_to_that_path(old, tmp_path):
    out = str(tmp_path / "lists.csv")
    killed = subprocess.Popen([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from nanorec.runs.files import atomic_write\n"
        "def write(tmp):\n"
        "    open(tmp, 'w').write('half a file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write({out!r}, write)\n")], env=child_env())
    assert killed.wait() == -signal.SIGKILL
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".lists.csv.{killed.pid}.") and left[0].endswith(".tmp"), left
    live = tmp_path / f".lists.csv.{os.getpid()}.abcdef.tmp"  # a live writer's (this process): kept
    live.write_text("in progress")
    code, lines = run_cli(["recommend", "--run", old[1], "--out", out, "--k", "3"])
    assert code == 0, lines
    assert sorted(os.listdir(tmp_path)) == sorted(["lists.csv", live.name])


# -----------------------------------------------------------------------------
# outputs only where a regular file or folder belongs; links in a run or study folder never followed

def _drain(fd_or_path, got: list):
    """A thread reading a pipe's read end (an fd) or a FIFO (a path) to its end into got[0]."""
    import threading

    def read():
        if isinstance(fd_or_path, int):
            with os.fdopen(fd_or_path, "rb") as f:
                got.append(f.read())
        else:
            with open(fd_or_path, "rb") as f:
                got.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_out_that_is_a_fifo_or_a_link_into_proc_is_written_to_never_replaced(old, tmp_path):
    import stat
    _, run = old
    plain = tmp_path / "plain.csv"
    assert run_cli(["recommend", "--run", run, "--out", str(plain), "--k", "3"])[0] == 0
    # a FIFO (what --out /dev/null, a character device, is to the writer: something to write to)
    fifo = str(tmp_path / "recs.fifo")
    os.mkfifo(fifo)
    got = []
    reader = _drain(fifo, got)
    assert run_cli(["recommend", "--run", run, "--out", fifo, "--k", "3"])[0] == 0
    reader.join(60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got == [plain.read_bytes()]
    # a link into /proc (what /dev/stdout is: -> /proc/self/fd/1), here to a pipe this test reads
    read, written = os.pipe()
    link = tmp_path / "stdout.csv"
    os.symlink(f"/proc/self/fd/{written}", link)
    got = []
    reader = _drain(read, got)
    try:
        assert run_cli(["recommend", "--run", run, "--out", str(link), "--k", "3"])[0] == 0
    finally:
        os.close(written)
    reader.join(60)
    assert os.readlink(link) == f"/proc/self/fd/{written}" and got == [plain.read_bytes()]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_tune_overwrite_replaces_a_best_link_never_the_folder_it_points_to(tmp_path):
    data = write_csv(str(tmp_path / "log.csv"), num_users=100, num_items=30, seed=4)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("the user's, elsewhere\n")
    before = snapshot(str(outside))
    proj = tmp_path / "proj"
    proj.mkdir()
    os.symlink(outside, proj / "best")
    assert run_cli(["tune", "--data", data, "--out", str(proj), "method=popularity", "--overwrite"])[0] == 0
    assert snapshot(str(outside)) == before  # not moved aside, deleted or written into
    assert not os.path.islink(proj / "best") and os.path.exists(proj / "best" / "metrics.json")
    assert not [n for n in os.listdir(proj) if "nanorec-" in n]  # no hidden sibling left


def test_a_log_in_a_run_folder_that_is_a_link_is_never_appended_through(old, tmp_path):
    data, run = copy_old(old, tmp_path)
    outside = tmp_path / "outside.log"
    outside.write_text("the user's own log\n")
    os.remove(os.path.join(run, "train.log"))
    os.symlink(outside, os.path.join(run, "train.log"))
    more = [a if not a.startswith("max_steps=") else "max_steps=6" for a in TINY]
    code, lines = run_cli(["train", "--data", data, "--out", run, "--resume", "--quiet", *more])
    assert code == 2 and len(lines) == 1 and "train.log: is a link" in lines[0], lines
    assert outside.read_text() == "the user's own log\n"
