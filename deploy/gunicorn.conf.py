"""Gunicorn settings for the reference app, the same in every stack.

    gunicorn -c deploy/gunicorn.conf.py deploy.app:app

Besides the TASKFLOW_* contract (taskflow/settings.py) it reads, all optional:

* ``BIND`` (e.g. ``127.0.0.1:8001``) or ``PORT``: where to listen (default ``0.0.0.0:8000``);
* ``WEB_CONCURRENCY``: worker processes (default 2);
* ``GUNICORN_PIDFILE``, ``GUNICORN_CONTROL_SOCKET``: per-master files, for several masters on one
  host (the local runner gives each its own in the run folder);
* ``FORWARDED_ALLOW_IPS``: who may set X-Forwarded-* (default loopback: the local nginx).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from typing import Any

from taskflow.settings import Settings
from taskflow.web.server import server_serving

#: The port every stack's instances listen on (nginx/conf.d/upstream.conf points at it).
DEFAULT_PORT = 8000
#: Workers per master when WEB_CONCURRENCY is not set.
DEFAULT_WORKERS = 2
#: Seconds gunicorn waits beyond TASKFLOW_SHUTDOWN_TIMEOUT for the final flush and exit.
GRACE_MARGIN = 10

_settings = Settings.from_env()  # fails here, in the master, on a bad TASKFLOW_* value

# ASGI workers. uvicorn_worker is the maintained home of UvicornWorker; `uvicorn.workers` is
# deprecated.
worker_class = "uvicorn_worker.UvicornWorker"

# Several processes per instance, all sharing the backend. WEB_CONCURRENCY is the name PaaS
# platforms and gunicorn itself use.
workers = int(os.environ.get("WEB_CONCURRENCY") or DEFAULT_WORKERS)

# Containers listen on every interface of their own network namespace; the runner passes a
# loopback BIND so that only its nginx is in front of the instances.
bind = [os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT') or DEFAULT_PORT}"]

# SIGTERM makes each worker drain its running tasks for up to TASKFLOW_SHUTDOWN_TIMEOUT, then
# flush; gunicorn must wait longer than that before it SIGKILLs the worker, or the drain is cut
# short. Compose's stop_grace_period / k8s terminationGracePeriodSeconds must in turn exceed this.
graceful_timeout = math.ceil(_settings.shutdown_timeout) + GRACE_MARGIN  # gunicorn wants an int

# A worker whose event loop does not report back for this long is hung: restart it. Sync tasks
# run in threads, never on the loop, so this is not a limit on task duration. A worker that
# leaves by itself (max_requests below, when turned on) stops reporting while it drains, so this
# must also outlast the drain, or the master would kill it halfway.
timeout = max(30, graceful_timeout)

# No worker recycling by default. taskflow's memory is bounded (the store's window), so there is
# nothing to shed, and recycling costs availability behind nginx: a recycling worker closes its
# keep-alive connections while nginx may be sending a request on one, and nginx resends a GET
# but never a POST (the load tests lost 1-5 POSTs in 30,000 to it; docs/loadtest.md,
# "Findings"). For an app that leaks, turn it on with GUNICORN_CMD_ARGS="--max-requests 1000
# --max-requests-jitter 100": the leaving worker drains, ends its dashboard streams and flushes
# like on SIGTERM.
max_requests = 0
max_requests_jitter = 0

# No preload: the app (and its TaskManager, thread pool and backend connections) is created in
# each worker after fork; connections are opened in each worker's lifespan, never shared.
preload_app = False

# Idle keep-alive seconds for connections from nginx: longer than nginx's upstream
# keepalive_timeout (nginx/snippets/upstream.conf), so nginx always closes first and never sends
# a request on a connection the worker is closing.
keepalive = 75

# Worker heartbeats are file metadata updates: keep them in memory, not on a container's overlay
# filesystem where they can stall.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

# Several masters on one host must not share files. The pid file is off unless asked for (in a
# container the master is PID 1); gunicorn's control socket defaults to ONE path per user, which
# a second master would take over, so it is off unless given a path of its own.
pidfile = os.environ.get("GUNICORN_PIDFILE") or None
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or None
control_socket_disable = _control_socket is None
if _control_socket is not None:
    control_socket = _control_socket

# Tells the masters apart in `ps` (when setproctitle is installed) and in the logs.
proc_name = f"taskflow-{_settings.instance_id or bind[0]}"

# Uvicorn takes client address and scheme from X-Forwarded-* only from these addresses: the
# local nginx by default; stacks where nginx has another address set FORWARDED_ALLOW_IPS.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"

# nginx logs every request with its request id; gunicorn logs its own events to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL") or "info"


def post_fork(server: Any, worker: Any) -> None:
    """Give each worker its own instance id: ``<TASKFLOW_INSTANCE_ID>-<pid>``.

    Every worker is a TaskManager of its own, so it needs an id of its own, as the default
    (host-pid) is. The app is imported after this runs (no preload), so it reads the new value.
    """
    base = os.environ.get("TASKFLOW_INSTANCE_ID", "").strip()
    if base:
        os.environ["TASKFLOW_INSTANCE_ID"] = f"{base}-{os.getpid()}"


# -- signals ----------------------------------------------------------------------------------
#
# What each signal to the master does is in docs/operations.md ("Graceful shutdown"); the tests
# in tests/integration/test_gunicorn_signals.py send each one to a real master. gunicorn stops
# its workers with SIGTERM on SIGTERM and with SIGQUIT ("quick shutdown") on SIGINT and SIGQUIT,
# and SIGKILLs whatever is left after graceful_timeout. The hooks below make every one of them a
# drain, and a second signal to the master the end of the drain, as under plain uvicorn.

#: The signals that stop the master.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def when_ready(server: Any) -> None:
    """Master side: a second stop signal cuts the workers' drain short, as under uvicorn.

    The master only queues signals; while it waits for its workers to stop (Arbiter.stop) it
    drops a second SIGTERM, and it turns a SIGINT or SIGQUIT after a SIGTERM into SIGQUIT to the
    workers and SIGKILL two seconds later, whether their final flush is done or not. In front
    of gunicorn's handler, the first stop signal goes on to it; any later one goes to every
    worker as SIGTERM, which taskflow takes as the second signal that ends the drain (running
    tasks are recorded interrupted, the final flush still runs), and not to gunicorn.
    """
    master = os.getpid()
    gunicorn_handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    received = 0

    def handle_stop(signum: int, frame: Any) -> None:
        nonlocal received
        received += 1
        # Nothing is logged here: a signal handler may interrupt the master writing to its log
        # (gunicorn's own handler only queues, for that reason). Each worker's summary line says
        # "forced by a second signal".
        if received == 1 or os.getpid() != master:  # a worker before its own signal setup
            gunicorn_handlers[signum](signum, frame)
            return
        for pid in list(server.WORKERS):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handle_stop)


def post_worker_init(worker: Any) -> None:
    """Worker side: SIGQUIT drains like SIGTERM, a clean stop logs nothing alarming."""
    # uvicorn_worker answers SIGQUIT by calling the worker's handle_exit (its
    # _install_sigquit_handler; encode/uvicorn#1116, benoitc/gunicorn#2604), which only clears
    # gunicorn's ``alive`` flag that uvicorn never reads: the worker went on serving until the
    # master SIGKILLed it. Start uvicorn's own graceful shutdown instead, exactly as SIGTERM
    # does. When the worker is already stopping, SIGQUIT is no second signal: Ctrl-C gives every
    # worker a SIGINT of its own and, at once, gunicorn's SIGQUIT, and that must not cut the
    # drain short. A second signal to the master reaches the workers as SIGTERM (when_ready).
    gunicorn_handle_exit = worker.handle_exit

    def handle_quit(signum: int, frame: Any) -> None:
        gunicorn_handle_exit(signum, frame)
        if server_serving():  # during taskflow's drain the SIGTERM handler is taskflow's
            signal.raise_signal(signal.SIGTERM)

    worker.handle_exit = handle_quit

    # uvicorn re-raises the signal that stopped it once it has shut down, with the handler it
    # found, here SIG_DFL: a worker stopped by SIGINT dies of SIGINT, which the master logs as a
    # warning ("Worker (pid:...) was sent SIGINT!"), one per worker at every Ctrl-C. Die of
    # SIGTERM instead, which the master expects (logged at info). Dying of a signal rather than
    # exiting is uvicorn's choice and a good one: threads still running a task cut off by a
    # forced drain cannot hold the process up.
    signal.signal(signal.SIGINT, _die_of_sigterm)

    # gunicorn hands each worker its listeners wrapped in gunicorn.sock.BaseSocket. uvloop
    # serves a socket given to create_server() by its file descriptor and, on close, detaches a
    # plain socket.socket but close()s anything else, expecting EBADF; the wrapper catches that
    # EBADF itself and logs "Error while closing socket [Errno 9] Bad file descriptor" at every
    # stop (benoitc/gunicorn#1877, #3013; uvloop/handles/handle.pyx, UVSocketHandle._close).
    # The wrapper's public ``sock`` is the plain socket: serving that one closes cleanly, under
    # uvloop and plain asyncio alike. The master keeps its own wrappers.
    worker.sockets = [getattr(listener, "sock", listener) for listener in worker.sockets]


def _die_of_sigterm(signum: int, frame: Any) -> None:
    signal.raise_signal(signal.SIGTERM)
