"""Run the ``skadapt`` command in a new process without paying for Python's imports every time.

Each run of the command spends seconds importing torch, torchvision, skorch and scikit-learn before
it does anything: on a 2-core machine most of a command-line test's time. A fork server imports
what the command imports (``skadapt.cli._commands``) once, then forks one child per command. The
child is a new process with the caller's stdin, stdout and stderr (passed over a Unix socket), its
working directory, environment, ``sys.argv`` and ``sys.path[0]``; it runs the real entry point
(``python -m skadapt``, or the ``skadapt`` console script) and exits with its status, which the
caller's process exits with: a test sees what a subprocess gives it. Only the interpreter start-up
and those imports are skipped. The server holds to that:

- the imports must print nothing and warn nothing (a fresh process would show what they print);
- the caller's environment must be the one the server started with, bar variables that are read
  only when used (``PATH``, ``TORCH_HOME``, ...);
- the child starts from a fresh process's random state: torch's default generator is reset to its
  default seed, numpy's and Python's global generators are reseeded from the OS;
- at exit the child waits for its threads and runs the ``atexit`` handlers, as an interpreter does.

When the imports are not silent, or the environment differs, the command runs as a plain
subprocess instead (the client ``exec``s it), so the result never depends on the server.

Used by :func:`tests.test_cli.skadapt` (``command``: the command line to give ``subprocess.run``)
and by the docs' command tests (``shim_dir``: a folder to put first on ``PATH``, whose ``skadapt``
goes through the server). ``test_cli.py`` checks that a command gives what a plain process gives.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys

HERE = os.path.abspath(__file__)
# read by the libraries only when used, not at import: they may differ between the server's start
# and a command (bash sets PWD, OLDPWD, SHLVL and _; the docs' tests put a folder first on PATH;
# pytest names the running test)
LATE_VARIABLES = frozenset({"PATH", "PWD", "OLDPWD", "SHLVL", "_", "TORCH_HOME",
                            "PYTEST_CURRENT_TEST"})
_LENGTH = struct.Struct("!Q")
_STATUS = struct.Struct("!ii")  # (1, exit code) or (0, signal number)


def startup_environment(env) -> dict:
    """The variables a Python process may read while it starts and imports."""
    return {key: value for key, value in env.items() if key not in LATE_VARIABLES}


# ----------------------------------------------------------------------------- the client
def client_main(address: str, mode: str, script: str, args: list[str]) -> None:
    """Run the command through the server at ``address``, or ``exec`` it where the server refuses.

    ``mode`` is ``"module"`` (``python -m skadapt ARGS``) or ``"console"`` (the console script
    ``script`` with ``ARGS``). Exits with the command's status (dies of its signal).
    """
    request = json.dumps({"mode": mode, "script": script, "args": args, "cwd": os.getcwd(),
                          "env": dict(os.environ)}).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
        socket.send_fds(connection, [_LENGTH.pack(len(request))], [0, 1, 2])
        connection.sendall(request)
        answer = _read(connection, 1)
    except OSError:
        answer = b""
    if answer != b"R":  # refused, or no server: a plain process
        connection.close()
        if mode == "module":
            os.execv(sys.executable, [sys.executable, "-m", "skadapt", *args])
        os.execv(script, [script, *args])
    status = _read(connection, _STATUS.size)
    if len(status) != _STATUS.size:
        sys.stderr.write("tests/_forkserver.py: the server lost the command\n")
        sys.exit(1)
    exited, code = _STATUS.unpack(status)
    if exited:
        os._exit(code)
    import signal

    signal.signal(code, signal.SIG_DFL)
    os.kill(os.getpid(), code)
    os._exit(128 + code)


def _read(connection, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


# ----------------------------------------------------------------------------- the server
def serve(address: str, parent: int) -> None:
    """Import what the command imports, then fork a child per request (runs until ``parent`` ends)."""
    sys.path.pop(0)  # this file's folder: a command has its own sys.path[0]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)  # requests wait here while the imports run
    startup = startup_environment(os.environ)
    silent = _preload()
    while os.getppid() == parent:
        _reap()
        if not select.select([listener], [], [], 1.0)[0]:
            continue
        connection, _ = listener.accept()
        try:
            header, fds, _, _ = socket.recv_fds(connection, _LENGTH.size, 3)
            header += _read(connection, _LENGTH.size - len(header))
            request = json.loads(_read(connection, _LENGTH.unpack(header)[0]))
        except (OSError, ValueError, struct.error):
            connection.close()
            continue
        if not silent or len(fds) != 3 or startup_environment(request["env"]) != startup:
            connection.sendall(b"F")
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:
                listener.close()
                _watch(connection, request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        connection.close()


def _preload() -> bool:
    """Import the command's modules; False when that printed or warned anything."""
    import tempfile
    import warnings

    with tempfile.TemporaryFile() as output:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        try:
            with warnings.catch_warnings(record=True) as caught:
                import skadapt.cli  # noqa: F401
                import skadapt.cli._commands  # noqa: F401
        except BaseException:
            return False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        return not caught and output.seek(0, os.SEEK_END) == 0


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _watch(connection, request, fds) -> None:
    """In a fork of the server: fork the command, wait for it and send its status back; kill it
    when the client goes away (e.g. its timeout)."""
    connection.sendall(b"R")
    pid = os.fork()
    if pid == 0:
        connection.close()
        _command(request, fds)  # never returns
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    exited = os.pidfd_open(pid)
    ready = select.select([connection, exited], [], [])[0]
    if exited not in ready and not connection.recv(1):  # the client is gone: so is the command
        try:
            os.killpg(pid, 9)
        except OSError:
            pass
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        reply = _STATUS.pack(0, os.WTERMSIG(status))
    else:
        reply = _STATUS.pack(1, os.waitstatus_to_exitcode(status))
    try:
        connection.sendall(reply)
    except OSError:
        pass
    os._exit(0)


def _command(request, fds) -> None:
    """In the command's process: become the process ``python -m skadapt`` or the console script
    would have started, run it, and exit as the interpreter would."""
    import random
    import runpy

    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # a fresh process's random state
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.default_generator.set_state(torch.Generator().get_state())
    code = 0
    try:
        if request["mode"] == "module":
            sys.path.insert(0, os.getcwd())
            sys.argv = ["-m", *request["args"]]
            runpy.run_module("skadapt", run_name="__main__", alter_sys=True)
        else:
            script = request["script"]
            sys.path.insert(0, os.path.dirname(os.path.realpath(script)))
            sys.argv = [script, *request["args"]]
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = _exit_code(exit_)
    except KeyboardInterrupt:
        _finish()
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _finish()
    os._exit(code)


def _exit_code(exit_: SystemExit) -> int:
    if exit_.code is None:
        return 0
    if isinstance(exit_.code, int):
        return exit_.code & 0xFF
    print(exit_.code, file=sys.stderr)
    return 1


def _finish() -> None:
    import atexit
    import threading

    threading._shutdown()  # wait for the non-daemon threads, as at interpreter exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


# ----------------------------------------------------------------------------- the caller's side
_servers: dict[tuple, str] = {}


def _address(env) -> str:
    """The socket of the server for ``env``'s start-up variables (started at the first use)."""
    key = tuple(sorted(startup_environment(env).items()))
    if key not in _servers:
        import atexit
        import subprocess
        import tempfile

        folder = tempfile.mkdtemp(prefix="skadapt-forkserver-")
        address = os.path.join(folder, "socket")
        process = subprocess.Popen([sys.executable, HERE, "serve", address, str(os.getpid())],
                                   cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):  # the socket exists before the imports start
            if os.path.exists(address) or process.poll() is not None:
                break
            import time

            time.sleep(0.05)
        atexit.register(_stop, process, folder)
        _servers[key] = address
    return _servers[key]


def _stop(process, folder) -> None:
    import shutil

    process.kill()
    process.wait()
    shutil.rmtree(folder, ignore_errors=True)


def command(args, env) -> list[str]:
    """The command line running ``python -m skadapt ARGS`` through a server for ``env``: give it
    to ``subprocess.run`` with that ``env`` (capture, timeout and return code as for the real one)."""
    return [sys.executable, "-I", "-S", HERE, "client", _address(env), "module", "", *map(str, args)]


def shim_dir(env, script: str) -> str | None:
    """A folder holding a ``skadapt`` that runs the console script ``script`` through a server for
    ``env``: put it first on ``PATH``. None where ``script`` does not exist (nothing to shim)."""
    if not os.path.isfile(script):
        return None
    address = _address(env)
    folder = os.path.join(os.path.dirname(address), "shim-" + str(abs(hash(script))))
    if not os.path.isdir(folder):
        os.mkdir(folder)
        path = os.path.join(folder, "skadapt")
        with open(path, "w") as file:
            file.write(f"#!{sys.executable} -IS\nimport sys\n\n"
                       f"sys.path.insert(0, {os.path.dirname(HERE)!r})\n"
                       f"from _forkserver import client_main\n\n"
                       f"client_main({address!r}, 'console', {script!r}, sys.argv[1:])\n")
        os.chmod(path, 0o755)
    return folder


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:  # client ADDRESS MODE SCRIPT ARGS...
        client_main(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
