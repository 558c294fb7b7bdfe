"""Render a request's own chat template in a process that is killed when its time is up.

A template is the client's code. The sandbox keeps it away from Python's internals but
not from the CPU: ``{% for i in range(99999) %}{% for j in range(99999) %}…`` runs for
hours, and a thread cannot be stopped. So `TemplateRunner` renders in a small pool of
child processes (started by ``multiprocessing``'s forkserver, never by forking the
threaded gateway) and, when a render outlives `TEMPLATE_SECONDS`, kills its child with
SIGKILL and starts another; the client gets its 400 and the core is free again.

Bounds, all refused with a 400 naming the request field:

- the template's source (`MAX_TEMPLATE_CHARS`) and the pickled messages and variables
  (`MAX_INPUT_BYTES`);
- the output (`MAX_OUTPUT_CHARS`), counted while Jinja yields it;
- the child's address space (`CHILD_MEMORY_BYTES`), for a string grown in one go; a
  child whose peak memory passed `RETIRE_RSS_BYTES` is replaced after its answer.

The child answers in plain bytes, never pickle, so even a child whose sandbox was
broken cannot make the gateway run code. Nothing starts until the first render.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import queue
import resource
import signal
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from chatgate.errors import InvalidRequestError
from chatgate.prompt.chat_template import ChatTemplateError, render_chat_template

TEMPLATE_SECONDS = 2.0  # the longest a request's own chat_template may take to render
MAX_TEMPLATE_CHARS = 256 * 1024  # real templates are a few KiB; the largest known ~30 KiB
MAX_INPUT_BYTES = 8 * 1024 * 1024  # pickled messages and variables sent to the child
MAX_OUTPUT_CHARS = 4 * 1024 * 1024  # ~1M tokens: more than any model's context holds
CHILD_MEMORY_BYTES = 1024 * 1024 * 1024  # RLIMIT_AS of a child: a bomb gets MemoryError
RETIRE_RSS_BYTES = 256 * 1024 * 1024  # a child that grew this big is replaced afterwards
POOL_SIZE = 2  # children rendering at once; more requests wait for a free one
SELF_KILL_MARGIN = 3.0  # a child orphaned mid-render dies this long after the deadline

_OK, _ERROR = b"o", b"e"  # the first byte of a child's answer
_RETIRE, _KEEP = b"r", b"k"  # the second: whether the child goes after it


class TemplateRunner:
    """A pool of processes that render chat templates, each render within a deadline."""

    def __init__(self, size: int = POOL_SIZE, seconds: float = TEMPLATE_SECONDS) -> None:
        self.size = size
        self.seconds = seconds
        self._all = [_Slot() for _ in range(size)]
        # Last in, first out: one warm child serves a quiet gateway; a second starts only
        # when two renders overlap.
        self._slots: queue.LifoQueue[_Slot] = queue.LifoQueue()
        for slot in self._all:
            self._slots.put(slot)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    async def render(
        self,
        source: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        bos_token: str = "",
        eos_token: str = "",
        add_generation_prompt: bool = True,
        extra: Mapping[str, Any] | None = None,
        param: str | None = None,
    ) -> str:
        """`render_blocking`, awaited without blocking the event loop."""
        job = (source, list(messages), bos_token, eos_token, add_generation_prompt, extra)
        loop = asyncio.get_running_loop()
        # Our own threads, as many as children: they only wait on pipes, and a burst of
        # templates then cannot take the default executor from the rest of the gateway.
        return await loop.run_in_executor(self._threads(), self._run, job, param)

    def render_blocking(
        self,
        source: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        bos_token: str = "",
        eos_token: str = "",
        add_generation_prompt: bool = True,
        extra: Mapping[str, Any] | None = None,
        param: str | None = None,
    ) -> str:
        """Render in a child: the text, or a `ChatTemplateError` (timeout: a 400 too)."""
        job = (source, list(messages), bos_token, eos_token, add_generation_prompt, extra)
        return self._run(job, param)

    def pids(self) -> list[int]:
        """The process ids of the children now running (tests and diagnostics)."""
        return [pid for slot in self._all if (pid := slot.pid()) is not None]

    def close(self) -> None:
        """Kill every child and stop the threads; the runner starts afresh if used again."""
        for slot in self._all:
            slot.stop()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="template")
            return self._executor

    def _run(self, job: tuple[Any, ...], param: str | None) -> str:
        if len(job[0]) > MAX_TEMPLATE_CHARS:
            raise ChatTemplateError(
                f"chat_template is longer than {MAX_TEMPLATE_CHARS:,} characters", param=param
            )
        try:
            payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, ValueError, RecursionError) as exc:
            message = f"the variables for chat_template cannot be sent to its renderer: {exc}"
            raise ChatTemplateError(message, param=param) from None
        if len(payload) > MAX_INPUT_BYTES:
            raise ChatTemplateError(
                f"the messages and variables for chat_template are more than "
                f"{MAX_INPUT_BYTES:,} bytes",
                param=param,
            )
        slot = self._slots.get()
        try:
            kind, text = slot.exchange(payload, self.seconds)
        finally:
            self._slots.put(slot)
        if kind == _OK:
            return text
        if kind is None:
            # The same 400 the thread-based renderer gave for a template out of time.
            raise InvalidRequestError(
                f"chat_template took longer than {self.seconds:g} s to render", param=param
            )
        raise ChatTemplateError(text, param=param)


class _Slot:
    """One child process and the pipe to it; used by one thread at a time."""

    def __init__(self) -> None:
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._guard = threading.Lock()  # `close` may run while a thread uses the slot

    def pid(self) -> int | None:
        """The child's pid while it runs."""
        with self._guard:
            process = self._process
            return process.pid if process is not None and process.is_alive() else None

    def exchange(self, payload: bytes, seconds: float) -> tuple[bytes | None, str]:
        """Send one job; its answer, or ``(None, "")`` when the child ran out of time."""
        conn = self._ready(seconds)
        try:
            conn.send_bytes(payload)
        except OSError:
            # The child died while idle (killed from outside, say): a new one, once.
            self.stop()
            conn = self._ready(seconds)
            conn.send_bytes(payload)
        try:
            in_time = conn.poll(seconds)
            answer = conn.recv_bytes(MAX_OUTPUT_CHARS * 4 + 1024) if in_time else b""
        except (EOFError, OSError):
            self.stop()  # it crashed (or the runner is closing): the next job gets a new one
            return _ERROR, "the chat template crashed its renderer"
        if not in_time:
            self.stop()  # SIGKILL: the one way to stop Python code that never yields
            return None, ""
        kind, retire, text = answer[:1], answer[1:2], answer[2:]
        if retire == _RETIRE:
            self.stop()
        return (_OK if kind == _OK else _ERROR), text.decode("utf-8", "surrogatepass")

    def _ready(self, seconds: float) -> Connection:
        with self._guard:
            if self._process is not None and self._conn is not None and self._process.is_alive():
                return self._conn
        self.stop()
        context = multiprocessing.get_context("forkserver")
        # Children fork from the forkserver with Jinja already imported: a replacement
        # for a killed child then costs a fork, not a new interpreter.
        context.set_forkserver_preload(["jinja2.sandbox", "jinja2.ext", __name__])
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=_serve, args=(child, seconds), name="chat-template", daemon=True
        )
        process.start()
        child.close()
        with self._guard:
            self._process, self._conn = process, parent
        return parent

    def stop(self) -> None:
        """Kill the child (if any) and wait for it, so no core stays busy."""
        with self._guard:
            process, conn = self._process, self._conn
            self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5)
            process.close()


# --- the child -------------------------------------------------------------------------


def _serve(conn: Connection, seconds: float) -> None:
    """The child's loop: a job in, bytes out, until the gateway closes the pipe."""
    # Ctrl-C reaches the whole process group; the gateway decides when its children go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > CHILD_MEMORY_BYTES:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        # SIGALRM's default action ends the process even inside one long C call: the
        # backstop for a child whose gateway died (and so will never kill it).
        signal.setitimer(signal.ITIMER_REAL, seconds + SELF_KILL_MARGIN)
        answer = _answer(payload)
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            conn.send_bytes(answer)
        except OSError:
            return
        if answer[1:2] == _RETIRE:
            return


def _answer(payload: bytes) -> bytes:
    """Render one job: kind byte, retire byte, then the text (or error) in UTF-8."""
    source, messages, bos, eos, add_generation_prompt, extra = pickle.loads(payload)
    try:
        text = render_chat_template(
            source,
            messages,
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=add_generation_prompt,
            extra=extra,
            max_chars=MAX_OUTPUT_CHARS,
        )
        kind = _OK
    except ChatTemplateError as exc:
        text, kind = exc.message, _ERROR
    # ru_maxrss is in KiB on Linux. A child that once grew this big keeps its pages:
    # it answers, then makes way for a fresh one.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    retire = _RETIRE if peak > RETIRE_RSS_BYTES else _KEEP
    return kind + retire + text.encode("utf-8", "surrogatepass")


_default: TemplateRunner | None = None
_default_lock = threading.Lock()


def default_runner() -> TemplateRunner:
    """The process-wide runner, made on first use (its children start on first render)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TemplateRunner()
        return _default
