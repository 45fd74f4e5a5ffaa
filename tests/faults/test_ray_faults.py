"""A local Ray started by `--backend ray` does not outlive the process: SIGTERM, SIGHUP,
interpreter exit. The session logic is tested with a stand-in for the ray module; one test runs
a real Ray in an `annotate` subprocess and SIGTERMs it (about 60 s on 2 CPUs, most of it Ray's
start)."""

import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..conftest import write_jsonl

CODE = Path(__file__).parent.parent / "fake_teacher_code.py"


class FakeRay:
    """A stand-in for the ray module: `init` replaces the SIGTERM handler, as ray's does."""

    def __init__(self):
        self.calls = []

    def init(self, address=None, **kwargs):
        self.calls.append(("init", address))
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    def shutdown(self, *, wait_for_processes=False):
        self.calls.append(("shutdown", wait_for_processes))
        print("SHUTDOWN", wait_for_processes, flush=True)


@pytest.fixture
def handlers():
    """SIGTERM at its default and SIGHUP ignored (as under nohup); both restored afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_session_restores_the_handlers_ray_init_replaced(handlers):
    from spacy_distill.backends.ray import RaySession

    ray = FakeRay()
    session = RaySession(ray, None)
    assert ray.calls == [("init", "local")] and session.owns_cluster
    assert signal.getsignal(signal.SIGTERM) == session._on_signal
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN  # still ignored
    session.close()
    session.close()  # once only
    assert ray.calls == [("init", "local"), ("shutdown", True)]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    # A handler the caller set is called instead (the run goes on), and is restored.
    received = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    mine = signal.getsignal(signal.SIGTERM)
    ray = FakeRay()
    session = RaySession(ray, "ray://head:10001")
    assert ray.calls == [("init", "ray://head:10001")] and not session.owns_cluster
    signal.raise_signal(signal.SIGTERM)
    assert received == [signal.SIGTERM]
    session.close()
    assert signal.getsignal(signal.SIGTERM) == mine


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_stop_signal_shuts_ray_down_and_exits(handlers, signame):
    from spacy_distill.backends.ray import RaySession

    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    ray = FakeRay()
    session = RaySession(ray, "local")
    assert (
        signal.getsignal(getattr(signal, signame)) == session._on_signal
    )  # else the test would die
    with pytest.raises(SystemExit) as info:
        try:
            signal.raise_signal(getattr(signal, signame))
        finally:
            session.close()
    assert info.value.code == 128 + getattr(signal, signame)
    assert ray.calls[-1] == ("shutdown", True)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_interpreter_exit_shuts_ray_down():
    # In a subprocess: an error that skips every `close` still stops Ray at exit (atexit).
    code = textwrap.dedent(f"""
        import signal, sys
        {textwrap.indent(inspect.getsource(FakeRay), "        ").strip()}
        from spacy_distill.backends.ray import RaySession
        session = RaySession(FakeRay(), None)
        raise RuntimeError("an error that skips every close")
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert "RuntimeError" in result.stderr and result.returncode == 1, result.stderr
    assert result.stdout.split() == ["SHUTDOWN", "True"]


def test_sigterm_leaves_no_ray_process_behind(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    psutil = pytest.importorskip("psutil")
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": f"text number {i}"} for i in range(200)])
    log = tmp_path / "scored.log"
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text(
        '[teacher]\n@teachers = "spacy-distill-test.CountingTeacher.v1"\n'
        f"log_path = {json.dumps(str(log))}\ndelay = 0.5\n"
    )
    command = [
        sys.executable,
        "-m",
        "spacy_distill",
        "annotate",
        str(data),
        str(tmp_path / "out"),
        "--teacher",
        str(cfg),
        "--code",
        str(CODE),
        "--cache",
        str(tmp_path / "cache.sqlite"),
        "--no-progress",
        "--backend",
        "ray",
        "--ray-actors",
        "1",
    ]
    with open(tmp_path / "output.txt", "w") as output:  # Ray writes a lot: a pipe could fill
        env = {**os.environ, "RAY_ADDRESS": ""}
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 240
        while not log.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert log.exists(), (tmp_path / "output.txt").read_text()[-3000:]
        # The teacher actor is scoring: Ray's processes are all descendants of the driver.
        ray_processes = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(p.name() for p in ray_processes)
        assert "raylet" in names and "ray::" in names, names
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    _, alive = psutil.wait_procs(ray_processes, timeout=30)
    left = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:  # do not leave them to the next test
        p.kill()
    assert not left, [(p.pid, p.name()) for p in left]
