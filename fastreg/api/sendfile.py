"""Zero-copy blob bodies, safe under clients that reset, stall or never read.

A blob GET from local disk goes out with `sendfile(2)`, page cache to socket, the bytes never
entering Python. uvloop does not implement `loop.sendfile`, and a blocking sendfile on the event
loop would stop every other client, so the calls run on a few sender threads (`Sender`). Three
rules, each the fix of a way this went wrong before:

- A transfer never holds a descriptor number the event loop owns. When a client resets, uvloop
  closes the connection's fd and the next accepted connection may get the same number: a thread
  still writing to that number wrote blob bytes into another client's response. So a transfer
  works on an `os.dup()` of the socket (and of the file), taken on the loop while the connection
  is known to be open; only the sender thread uses and closes it, so no one can close it under
  us. Closing the connection stays the transport's business.
- No thread per download and no `select()`: each sender thread multiplexes all of its transfers
  with its own `epoll` set (any descriptor number, no FD_SETSIZE limit) on non-blocking sockets.
  A client that never reads costs an entry in a set, not a thread, so no fixed pool can be
  exhausted and other downloads never wait behind it.
- A transfer that makes no progress for `stall_timeout` seconds fails; the caller aborts the
  transport, so the client sees a closed connection, never a short body followed by something
  else. `StallWatch` applies the same rule to bodies streamed through the transport.

Cold disk: sendfile on a page-cache miss blocks its sender thread (and the transfers sharing it)
for one disk read, never the event loop. Each transfer asks the kernel to read ahead
(`POSIX_FADV_WILLNEED`) a window beyond its send position, so the disk works ahead of the
sockets, and there are several sender threads so one slow read does not hold every download.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger("fastreg.api.sendfile")

CHUNK = 16 << 20  # most one sendfile call may send: keeps a fast reader from hogging its thread
READAHEAD = 8 << 20  # how far beyond the send position the kernel is asked to read ahead
SWEEP = 1.0  # how often, at most, a sender thread looks for stalled transfers (seconds)
_LINGER_0 = struct.pack("ii", 1, 0)


class SendStalled(ConnectionError):
    """The client accepted no byte for the configured send timeout; its connection is closed."""


def reset_on_close(sock: socket.socket | socket.SocketType) -> None:
    """Make the last close of ``sock`` a reset (SO_LINGER 0) rather than a FIN.

    A cut download must look cut: with a FIN the client could take what it got for a whole
    body, and the kernel would go on holding the unsent buffer for a client that does not read
    (a FIN waits behind that buffer, so such a client would not even see the close).
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)


def sender_threads() -> int:
    """Threads per process: one per core (a loopback sendfile is CPU work), two to four."""
    return max(2, min(4, os.cpu_count() or 2))


@dataclass(eq=False, slots=True)
class _Transfer:
    sock: int  # our dup of the connection's socket: only the sender thread uses and closes it
    file: int  # our dup of the blob file
    offset: int
    end: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    progress: float = field(default_factory=time.monotonic)
    ahead: int = 0  # where the readahead window asked for so far ends


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # cancelled by the handler meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _Lane:
    """One sender thread: an epoll set of in-flight transfers, fed through an inbox."""

    def __init__(self, stall_timeout: float, name: str) -> None:
        self._stall_timeout = stall_timeout
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._inbox: collections.deque[tuple[bool, _Transfer]] = collections.deque()
        self._transfers: dict[int, _Transfer] = {}
        # `_closed` (the thread has ended) and the inbox change under the lock, so a transfer is
        # either taken by the thread or failed here, never left waiting on a dead thread
        self._lock = threading.Lock()
        self._stopping = False
        self._closed = False
        # each counter written by one thread only (the loop, the sender): no lock needed
        self._submitted = 0
        self._finished = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def load(self) -> int:
        """Transfers submitted and not finished: how `Sender` picks the least busy lane."""
        return self._submitted - self._finished

    def submit(self, transfer: _Transfer) -> None:
        self._submitted += 1
        self._post(False, transfer)

    def cancel(self, transfer: _Transfer) -> None:
        self._post(True, transfer)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._stopping = True
                os.eventfd_write(self._wake, 1)
        self._thread.join(timeout=5)
        if not self._thread.is_alive() and self._wake >= 0:
            os.close(self._wake)  # only once the thread that polls it is gone
            self._wake = -1

    def _post(self, cancel: bool, transfer: _Transfer) -> None:
        with self._lock:
            if not self._closed:
                self._inbox.append((cancel, transfer))
                os.eventfd_write(self._wake, 1)
                return
        if not cancel:
            self._release(transfer, ConnectionAbortedError("sender stopped"))

    def _run(self) -> None:
        next_sweep = time.monotonic() + SWEEP
        try:
            while not self._stopping:
                timeout = max(0.0, next_sweep - time.monotonic()) if self._transfers else -1
                for fd, _events in self._epoll.poll(timeout):
                    if fd == self._wake:
                        self._take_inbox()
                    elif (transfer := self._transfers.get(fd)) is not None:
                        self._pump(transfer)
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + SWEEP
                    self._sweep(now)
        except BaseException:
            log.exception("sender thread failed")
            raise
        finally:
            with self._lock:
                self._closed = True
                pending = list(self._inbox)
                self._inbox.clear()
            stopped = ConnectionAbortedError("sender stopped")
            for transfer in list(self._transfers.values()):
                self._finish(transfer, stopped)
            for cancel, transfer in pending:
                if not cancel:
                    self._release(transfer, stopped)
            self._epoll.close()

    def _take_inbox(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)
        while self._inbox:
            cancel, transfer = self._inbox.popleft()
            if cancel:
                if self._transfers.get(transfer.sock) is transfer:
                    self._finish(transfer, asyncio.CancelledError())
                continue
            try:
                self._epoll.register(transfer.sock, select.EPOLLOUT)
            except OSError as exc:
                self._release(transfer, exc)
                continue
            transfer.progress = time.monotonic()
            self._transfers[transfer.sock] = transfer

    def _pump(self, transfer: _Transfer) -> None:
        if transfer.ahead < transfer.end and transfer.offset + READAHEAD // 2 >= transfer.ahead:
            start = max(transfer.ahead, transfer.offset)
            transfer.ahead = min(transfer.end, start + READAHEAD)
            with contextlib.suppress(OSError):
                os.posix_fadvise(transfer.file, start, transfer.ahead - start,
                                 os.POSIX_FADV_WILLNEED)  # fmt: skip
        try:
            sent = os.sendfile(transfer.sock, transfer.file, transfer.offset,
                               min(transfer.end - transfer.offset, CHUNK))  # fmt: skip
        except BlockingIOError:
            return
        except OSError as exc:  # reset by the client (EPIPE, ECONNRESET), or a disk error
            self._finish(transfer, exc)
            return
        if sent == 0:  # the file shrank: never send fewer bytes than promised silently
            self._finish(transfer, ConnectionAbortedError("file ended before Content-Length"))
            return
        transfer.offset += sent
        transfer.progress = time.monotonic()
        if transfer.offset >= transfer.end:
            self._finish(transfer, None)

    def _sweep(self, now: float) -> None:
        for transfer in list(self._transfers.values()):
            if now - transfer.progress >= self._stall_timeout:
                self._finish(transfer, SendStalled(
                    f"no byte accepted for {self._stall_timeout:g}s at offset {transfer.offset}"
                ))  # fmt: skip

    def _finish(self, transfer: _Transfer, error: BaseException | None) -> None:
        del self._transfers[transfer.sock]
        self._epoll.unregister(transfer.sock)
        self._release(transfer, error)

    def _release(self, transfer: _Transfer, error: BaseException | None) -> None:
        if error is not None:
            own = socket.socket(fileno=transfer.sock)
            reset_on_close(own)
            own.detach()
        os.close(transfer.sock)
        os.close(transfer.file)
        self._finished += 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            transfer.loop.call_soon_threadsafe(_settle, transfer.future, error)


class Sender:
    """The sender threads of one process; started on first use, stopped by `close`."""

    def __init__(self, stall_timeout: float, threads: int | None = None) -> None:
        self.stall_timeout = stall_timeout
        self._threads = threads or sender_threads()
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()
        self._closing = False

    def _lane(self) -> _Lane:
        with self._lock:
            if self._closing:
                raise ConnectionAbortedError("server shutting down")
            if not self._lanes:
                self._lanes = [self._new_lane(i) for i in range(self._threads)]
            for i, lane in enumerate(self._lanes):
                if lane.closed:  # its thread died (it logged why): a download needs a live one
                    lane.close()
                    self._lanes[i] = self._new_lane(i)
            return min(self._lanes, key=lambda lane: lane.load)

    def _new_lane(self, index: int) -> _Lane:
        return _Lane(self.stall_timeout, f"sendfile-{index}")

    def close(self) -> None:
        with self._lock:
            self._closing = True
            lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.close()

    async def send(self, transport: asyncio.Transport, file_fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file_fd`` from ``offset`` as the rest of the response.

        On any failure the transport is aborted before the error propagates, so a client never
        gets a short body on a connection that stays usable.
        """
        loop = asyncio.get_running_loop()
        try:
            await _flushed(transport, self.stall_timeout)
            sock = transport.get_extra_info("socket")
            if transport.is_closing() or sock is None:
                raise ConnectionResetError("client went away")
            lane = self._lane()
            future: asyncio.Future[None] = loop.create_future()
            # both dups on the loop, before any await: the fd is this connection's right now
            sock_fd = os.dup(sock.fileno())
            try:
                mine = os.dup(file_fd)
            except BaseException:
                os.close(sock_fd)
                raise
            transfer = _Transfer(sock_fd, mine, offset, offset + count, loop, future)
            lane.submit(transfer)
            try:
                await future
            except asyncio.CancelledError:
                lane.cancel(transfer)
                raise
        except BaseException as exc:
            cut(transport)
            if isinstance(exc, SendStalled):
                log.info("download stalled, connection closed", extra={"error": str(exc)})
            raise


def cut(transport: asyncio.Transport) -> None:
    """Close the connection of an unfinished response at once, as a reset."""
    sock = transport.get_extra_info("socket")
    if sock is not None and not transport.is_closing():
        reset_on_close(sock)
    transport.abort()


async def _flushed(transport: asyncio.Transport, stall_timeout: float) -> None:
    """Wait until what the transport buffers (the headers) reached the socket: it goes first."""
    last, since = transport.get_write_buffer_size(), time.monotonic()
    while size := transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("client went away")
        now = time.monotonic()
        if size < last:
            last, since = size, now
        elif now - since >= stall_timeout:
            raise SendStalled(f"headers not accepted for {stall_timeout:g}s")
        await asyncio.sleep(0.001)


class StallWatch:
    """Aborts a transport whose buffered bytes stop draining for ``timeout`` seconds.

    For bodies written through the transport (`response.write`), where a client that does not
    read makes `drain` wait forever. The caller counts what it hands to the transport
    (`queued`); what left is that minus what is still buffered, which only grows while the
    client reads. A transport with nothing buffered is waiting on us, not on the client.
    """

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._interval = max(0.05, min(SWEEP, timeout / 4))
        self._queued = 0
        self._left = 0
        self._since = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self.stalled = False

    def queued(self, count: int) -> None:
        self._queued += count

    def _check(self) -> None:
        buffered = self._transport.get_write_buffer_size()
        left = self._queued - buffered
        now = time.monotonic()
        if buffered == 0 or left > self._left:
            self._left, self._since = left, now
        elif now - self._since >= self._timeout:
            self.stalled = True
            log.info("download stalled, connection closed",
                     extra={"error": f"no byte accepted for {self._timeout:g}s"})  # fmt: skip
            cut(self._transport)
            return
        self._handle = asyncio.get_running_loop().call_later(self._interval, self._check)

    @contextlib.contextmanager
    def watching(self) -> Iterator[StallWatch]:
        self._left, self._since = -self._transport.get_write_buffer_size(), time.monotonic()
        self._handle = asyncio.get_running_loop().call_later(self._interval, self._check)
        try:
            yield self
        finally:
            if self._handle is not None:
                self._handle.cancel()
