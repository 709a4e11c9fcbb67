"""Poll workers: processes that fetch and parse feeds for the service.

::

    service (its loop)                      worker k (python -m monitor.workers)
      WorkerPool.submit(jobs) ── stdin ──>    its own loop, HTTP client, Memos
                                              poll_one per job (monitor.poller)
      on_results(batch)       <── stdout ──   results (and log records) in batches

One interpreter lock cannot both speak HTTP to thousands of feeds and parse
their bodies: every system call the loop makes waits for the lock to come back
from a parsing thread. So each worker is a whole poller of its own, and the
service's process keeps the store, the story index and the outbox. Frames are
length-prefixed pickles between our own processes. A feed goes to the same
worker every time (its memo is there): by name, or by host when ``per_host``
is too small to share out, so that a host's limit holds across workers.

A worker that dies fails the polls it held (each feed records the failure
and is polled again later) and is started again. Closing the pool closes the
workers' stdin: they cancel what they hold and exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from monitor.fetch import Fetcher
from monitor.parse import ParsedFeed
from monitor.poller import Fetched, Job, Memos, poll_one
from monitor.schedule import Polled

logger = logging.getLogger(__name__)

#: Feeds from which, by default, polling runs in a worker per core: a worker
#: costs a start-up (an interpreter and its imports) and its own memory.
POOL_FROM_FEEDS = 1000
#: Feeds never polled from which one worker is started even for fewer feeds: a
#: first poll parses every item, and a worker parses while the service stores.
FIRST_POLLS_FOR_A_WORKER = 200


def poll_workers(setting: int | None, *, feeds: int, unpolled: int, cores: int,
                 concurrency: int) -> int:
    """Worker processes for polling (pure): as configured (``poll.parse_workers``;
    0 polls on the service's loop); unset, one per core for many feeds, one for
    many first polls, else none. Never more than ``concurrency``: each needs a
    fetch slot of its own."""
    if setting is None:
        if feeds >= POOL_FROM_FEEDS:
            setting = cores
        elif unpolled >= FIRST_POLLS_FOR_A_WORKER:
            setting = 1
        else:
            setting = 0
    return max(0, min(setting, concurrency))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """What every worker polls with: ``poll:``'s settings, already shared out."""

    timeout: float
    max_bytes: int
    concurrency: int  # this worker's fetch slots
    per_host: int  # this worker's slots per host
    user_agent: str
    max_entries: int
    log_level: int


def shares(n: int, concurrency: int, per_host: int) -> tuple[int, int, bool]:
    """Each of ``n`` workers' fetch slots, its slots per host, and whether feeds are
    routed by host (pure). The totals never exceed the configured limits: a
    per-host limit smaller than ``n`` cannot be split, so each host's feeds all
    go to one worker, which then has the whole of it."""
    by_host = per_host < n
    return max(1, concurrency // n), per_host if by_host else per_host // n, by_host


# ------------------------------------------------------------------ frames

_HEAD = struct.Struct(">I")


def frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next object, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_HEAD.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    (size,) = _HEAD.unpack(head)
    return pickle.loads(await reader.readexactly(size))


# ------------------------------------------------------------------ the service's side


class _Slot:
    """One worker as the pool sees it: its process and the polls it holds."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.proc: asyncio.subprocess.Process | None = None
        self.held: dict[int, Job] = {}  # token -> job sent, no result yet
        self.waiting: list[Job] = []  # submitted while the worker was starting
        self.starting: asyncio.Task[None] | None = None
        self.reading: asyncio.Task[None] | None = None
        self.started_at = 0.0
        self.heard_at = 0.0  # its last frame, or the job that ended its idleness


class WorkerPool:
    """``n`` worker processes. ``submit`` returns at once; results (and the log
    records the workers made) come to ``on_results`` on the service's loop."""

    #: A worker that dies sooner than this after its start waits this long before
    #: the next start: a crash at start-up must not become a busy loop.
    RESTART_PAUSE = 1.0
    #: A worker holding polls that sends nothing for twice the fetch timeout and
    #: this long is stuck (stopped, deadlocked, swapping): it is killed, which
    #: fails what it held and starts it again. Every fetch ends within the
    #: timeout, so a live worker answers well within it.
    STALL_GRACE = 30.0

    def __init__(self, n: int, settings: WorkerSettings, *, by_host: bool,
                 on_results: Callable[[Sequence[Fetched]], None]) -> None:
        self.settings = settings
        self.by_host = by_host
        self.on_results = on_results
        self._slots = [_Slot(k) for k in range(n)]
        self._routes: dict[str, int] = {}  # a feed's name (or URL) -> its worker
        self._closing = False
        self._watching: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None]

    async def start(self) -> None:
        """Start every worker (without waiting for their imports: jobs sent
        meanwhile wait in the pipe)."""
        await asyncio.gather(*(self._start(s) for s in self._slots))
        self._watching = asyncio.create_task(self._watch(), name="workers:watch")

    async def _watch(self) -> None:
        """Kill a worker that holds polls and has gone silent (see STALL_GRACE): only
        its exit is noticed otherwise, and a stopped one would keep its polls,
        and the service's window of polls under way, for ever."""
        stall = 2 * self.settings.timeout + self.STALL_GRACE
        while True:
            await asyncio.sleep(min(stall / 4, 5.0))
            now = time.monotonic()
            for slot in self._slots:
                if (slot.held and slot.proc is not None and slot.starting is None
                        and now - slot.heard_at > stall):
                    logger.warning("worker.stalled worker=%d pid=%d held=%d silent=%.0fs "
                                   "(killing it)", slot.k, slot.proc.pid, len(slot.held),
                                   now - slot.heard_at)
                    slot.heard_at = now  # once: its exit is what fails the polls
                    try:
                        slot.proc.kill()
                    except ProcessLookupError:
                        pass

    def _route(self, job: Job) -> _Slot:
        name = job.url if self.by_host else job.feed
        k = self._routes.get(name)
        if k is None:
            key = (urlsplit(job.url).hostname or "") if self.by_host else job.feed
            k = zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(self._slots)
            if len(self._routes) >= 100_000:  # more than a service's feeds
                self._routes.clear()
            self._routes[name] = k
        return self._slots[k]

    def submit(self, jobs: Sequence[Job]) -> None:
        per_slot: dict[int, list[Job]] = {}
        for job in jobs:
            per_slot.setdefault(self._route(job).k, []).append(job)
        for k, batch in per_slot.items():
            slot = self._slots[k]
            if not slot.held:  # idle until now: silence counts from here
                slot.heard_at = time.monotonic()
            for job in batch:
                slot.held[job.token] = job
            if slot.proc is None or slot.proc.stdin is None or slot.starting is not None:
                slot.waiting.extend(batch)
                if slot.starting is None and not self._closing:
                    slot.starting = asyncio.create_task(self._restart(slot))
                continue
            slot.proc.stdin.write(frame(batch))

    async def _start(self, slot: _Slot) -> None:
        slot.started_at = slot.heard_at = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.workers", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(frame(self.settings))
        slot.proc = proc
        slot.reading = asyncio.create_task(self._read(slot, proc), name=f"worker:{slot.k}")
        logger.debug("worker.started worker=%d pid=%d", slot.k, proc.pid)

    async def _restart(self, slot: _Slot) -> None:
        try:
            if time.monotonic() - slot.started_at < self.RESTART_PAUSE:
                await asyncio.sleep(self.RESTART_PAUSE)
            if self._closing:
                return
            await self._start(slot)
        except (OSError, RuntimeError) as exc:  # cannot start a process: fail what waits
            logger.error("worker.start_failed worker=%d error=%s", slot.k, exc)
            self._fail(slot, f"poll worker could not start: {exc}")
            return
        finally:
            slot.starting = None
        waiting, slot.waiting = slot.waiting, []
        if waiting and slot.proc is not None and slot.proc.stdin is not None:
            slot.proc.stdin.write(frame(waiting))

    async def _read(self, slot: _Slot, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        why = "closed its output"
        try:
            while (got := await read_frame(proc.stdout)) is not None:
                slot.heard_at = time.monotonic()
                results, records = got
                for rec in records:
                    _relog(*rec)
                for r in results:
                    slot.held.pop(r.token, None)
                if results:
                    self.on_results(results)
        except (asyncio.IncompleteReadError, pickle.UnpicklingError, ValueError) as exc:
            why = f"sent a broken frame ({type(exc).__name__})"
        code = await proc.wait()
        if self._closing:
            return
        logger.warning("worker.exited worker=%d pid=%d code=%s why=%s held=%d (restarting it)",
                       slot.k, proc.pid, code, why, len(slot.held))
        slot.proc = None
        self._fail(slot, f"poll worker stopped (exit code {code})")

    def _fail(self, slot: _Slot, error: str) -> None:
        held, slot.held, slot.waiting = slot.held, {}, []
        if held:
            self.on_results([Fetched(j.feed, j.token, Polled.FAILED, 0.0, error=error)
                             for j in held.values()])

    async def aclose(self) -> None:
        """Stop every worker: the end of its input tells it to, then a kill after 5 s."""
        self._closing = True
        if self._watching is not None:
            self._watching.cancel()
        procs = [s.proc for s in self._slots if s.proc is not None]
        for s in self._slots:
            if s.starting is not None:
                s.starting.cancel()
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        readers = [s.reading for s in self._slots if s.reading is not None]
        if readers:
            await asyncio.wait(readers, timeout=5)


def _relog(level: int, name: str, message: str) -> None:
    """A worker's log record, logged here: one stream, one format, one place to look."""
    logging.getLogger(name).log(level, "%s", message)


# ------------------------------------------------------------------ the worker's side

#: Bodies up to this size are parsed on the worker's loop, larger ones on a
#: thread, so that the requests under way keep their deadlines meanwhile.
INLINE_PARSE = 1 << 20


class _Records(logging.Handler):
    """Keeps a worker's log records to send with its next results."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self.kept.append((record.levelno, record.name, message))


class _Replies:
    """Results on their way to the service, in batches: one frame for up to ``MOST``
    of them, sent at most ``WAIT`` after the first of the batch was ready. The
    age is checked as results are added too: a timer cannot fire while the loop
    parses body after body, and the service should be storing the first ones
    meanwhile."""

    WAIT = 0.005
    MOST = 64

    def __init__(self, out: asyncio.StreamWriter, records: _Records) -> None:
        self.out = out
        self.records = records
        self.pending: list[Fetched] = []
        self.since = 0.0  # loop time the oldest pending result was ready
        self.timer: asyncio.TimerHandle | None = None

    def add(self, got: Fetched) -> None:
        loop = asyncio.get_running_loop()
        if not self.pending:
            self.since = loop.time()
        self.pending.append(got)
        if len(self.pending) >= self.MOST or loop.time() - self.since >= self.WAIT:
            self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.WAIT, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending or self.records.kept:
            batch, self.pending = self.pending, []
            records, self.records.kept = self.records.kept, []
            self.out.write(frame((batch, records)))


async def _parse(call: Callable[[], ParsedFeed], size: int) -> ParsedFeed:
    if size <= INLINE_PARSE:
        return call()
    return await asyncio.to_thread(call)


async def serve(stdin: Any, stdout: Any) -> None:
    """A worker's life: settings first, then batches of jobs until the input ends."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    settings: WorkerSettings | None = await read_frame(reader)
    if settings is None:
        return
    records = _Records()
    root = logging.getLogger()
    root.handlers[:] = [records]
    root.setLevel(settings.log_level)
    replies = _Replies(writer, records)
    memos = Memos()
    tasks: set[asyncio.Task[None]] = set()

    async def one(job: Job) -> None:
        replies.add(await poll_one(fetcher, job, memos, _parse,
                                   max_entries=settings.max_entries))

    async with Fetcher(timeout=settings.timeout, max_bytes=settings.max_bytes,
                       concurrency=settings.concurrency, per_host=settings.per_host,
                       user_agent=settings.user_agent) as fetcher:
        while (jobs := await read_frame(reader)) is not None:
            for job in jobs:
                task = asyncio.create_task(one(job))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        for task in list(tasks):  # the service is done with us
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
    replies.flush()
    writer.close()


#: What a pipe to or from a worker holds: a frame of first polls' results is
#: hundreds of KB, and one that does not fit waits for the sender's loop to be
#: idle to go on, while a worker's loop parses body after body.
PIPE_SIZE = 1 << 20


def _widen(fd: int) -> None:
    """Make the pipe ``fd`` hold PIPE_SIZE bytes, or as much as the system allows
    (Linux; elsewhere, and past /proc/sys/fs/pipe-max-size, it stays as it is)."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    size = PIPE_SIZE
    while size >= 1 << 16:
        try:
            fcntl.fcntl(fd, set_size, size)
            return
        except OSError:
            size //= 2


def main() -> None:
    stdin = os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    stdout = os.fdopen(sys.stdout.fileno(), "wb", buffering=0, closefd=False)
    sys.stdout = sys.stderr  # nothing but frames goes to the service's pipe
    _widen(stdin.fileno())
    _widen(stdout.fileno())
    asyncio.run(serve(stdin, stdout))
    # The service waits for this process to end (WorkerPool.aclose): spare its exit
    # the collections over everything imported and parsed (see monitor.cli.main).
    gc.freeze()


if __name__ == "__main__":
    main()
