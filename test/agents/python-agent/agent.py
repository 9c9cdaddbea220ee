#!/usr/bin/env python3
"""Fleetbridge test agent built on the real OpenTelemetry Python OpAMP client.

It uses `opentelemetry-opamp-client` (see requirements.txt for the pinned version) over its
only transport, plain HTTP POST of protobuf messages, and is driven by a test harness:

* stdin:  one JSON object per line, a command:
    {"cmd": "mode", "remoteConfig": "apply" | "fail" | "ignore", "error": "..."}
    {"cmd": "stop"}
* stdout: one JSON object per line, an event (see `emit` calls below).
* stderr: human-readable logs (the library's included).

The process exits 0 after {"cmd":"stop"}, when stdin closes, on SIGTERM/SIGINT, or after
--max-lifetime-seconds (a safety net so a leaked agent cannot live forever).
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from typing import Any

import requests
import yaml
from opentelemetry._opamp.agent import OpAMPAgent
from opentelemetry._opamp.callbacks import MessageData, OpAMPCallbacks
from opentelemetry._opamp.client import OpAMPClient
from opentelemetry._opamp.proto import opamp_pb2
from opentelemetry._opamp.transport.requests import RequestsTransport
from opentelemetry._opamp.version import __version__ as OPAMP_CLIENT_VERSION

log = logging.getLogger("python-test-agent")

_STATUS_NAMES = {
    opamp_pb2.RemoteConfigStatuses_UNSET: "UNSET",
    opamp_pb2.RemoteConfigStatuses_APPLIED: "APPLIED",
    opamp_pb2.RemoteConfigStatuses_APPLYING: "APPLYING",
    opamp_pb2.RemoteConfigStatuses_FAILED: "FAILED",
}

# ---------------------------------------------------------------------------------------------
# stdout events
# ---------------------------------------------------------------------------------------------

_emit_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """Write one event as a JSON line. Called from the main, worker and timer threads."""
    record = {"event": event, "ts": time.time(), **fields}
    line = json.dumps(record, default=str, separators=(",", ":"))
    with _emit_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            # The harness went away; nothing left to tell.
            pass


# ---------------------------------------------------------------------------------------------
# Remote config handling (the library's callbacks)
# ---------------------------------------------------------------------------------------------


class Mode:
    """What the agent does with a remote config; changed by {"cmd":"mode"}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.remote_config = "apply"
        self.error = "rejected by python test agent"

    def set(self, remote_config: str, error: str | None) -> None:
        with self._lock:
            self.remote_config = remote_config
            if error is not None:
                self.error = error

    def get(self) -> tuple[str, str]:
        with self._lock:
            return self.remote_config, self.error


def _describe_config(remote_config: opamp_pb2.AgentRemoteConfig) -> dict[str, Any]:
    """Summarise an AgentRemoteConfig: the "" entry's text, its top-level keys, all file names."""
    config_map = remote_config.config.config_map
    files = sorted(config_map.keys())
    entry = config_map[""] if "" in config_map else None
    body: str | None = None
    content_type: str | None = None
    if entry is not None:
        content_type = entry.content_type
        body = entry.body.decode("utf-8", errors="replace")
    return {
        "hash": remote_config.config_hash.hex(),
        "files": files,
        "contentType": content_type,
        "body": body,
    }


def _parse_body(body: str | None) -> tuple[list[str], str | None]:
    """Parse the "" entry as YAML (JSON is YAML too). Returns (top-level keys, parse error)."""
    if body is None or body.strip() == "":
        return [], None
    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        return [], f"invalid YAML: {exc}"
    if doc is None:
        return [], None
    if not isinstance(doc, dict):
        return [], f"config is a {type(doc).__name__}, not a mapping"
    return [str(k) for k in doc.keys()], None


class HttpObserver:
    """requests response hook: remembers what the last OpAMP HTTP response looked like."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: dict[str, Any] | None = None

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        info = {
            "status": response.status_code,
            "contentType": response.headers.get("Content-Type"),
            # requests decompresses gzip transparently; this is what the server chose to send.
            "contentEncoding": response.headers.get("Content-Encoding"),
            "requestContentEncoding": response.request.headers.get("Content-Encoding"),
            "requestBytes": len(response.request.body or b""),
        }
        with self._lock:
            self.last = info
        self._report_notable(response)

    @staticmethod
    def _report_notable(response: requests.Response) -> None:
        """Emit `server_message` for a ServerToAgent that asks for full state or offers connection
        settings. The library itself acts on ReportFullState only (it queues a full state report) and
        never hands connection settings to its callbacks, so this is the only place they are seen."""
        if response.status_code != 200 or not response.content:
            return
        try:
            msg = opamp_pb2.ServerToAgent.FromString(response.content)
        except Exception:  # noqa: BLE001 - not ours to judge; the library reports bad responses
            return
        full_state = bool(msg.flags & opamp_pb2.ServerToAgentFlags_ReportFullState)
        offers = msg.HasField("connection_settings")
        if not (full_state or offers):
            return
        emit(
            "server_message",
            reportFullState=full_state,
            connectionSettings=offers,
            heartbeatIntervalSeconds=(
                msg.connection_settings.opamp.heartbeat_interval_seconds
                if offers and msg.connection_settings.HasField("opamp")
                else None
            ),
            remoteConfig=msg.HasField("remote_config"),
        )

    def get(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self.last is None else dict(self.last)


class TestAgentCallbacks(OpAMPCallbacks):
    def __init__(self, mode: Mode, http: HttpObserver) -> None:
        self._mode = mode
        self._http = http
        self._lock = threading.Lock()
        self._connected_once = False
        self._failing = False
        self._responses = 0
        self._last_hash: str | None = None

    # Called after every successful HTTP exchange (the library has no separate "connected").
    def on_connect(self, agent: OpAMPAgent, client: OpAMPClient) -> None:
        with self._lock:
            self._responses += 1
            first = not self._connected_once
            recovered = self._failing
            self._connected_once = True
            self._failing = False
            n = self._responses
        if first or recovered:
            emit("connected", first=first, responses=n, http=self._http.get())

    # Called after every failed attempt; reported once per run of failures.
    def on_connect_failed(self, agent: OpAMPAgent, client: OpAMPClient, error: Exception) -> None:
        with self._lock:
            report = not self._failing
            self._failing = True
        if report:
            emit("connect_failed", error=str(error), errorType=type(error).__name__)

    def on_error(
        self,
        agent: OpAMPAgent,
        client: OpAMPClient,
        error_response: opamp_pb2.ServerErrorResponse,
    ) -> None:
        emit(
            "error",
            source="server",
            type=opamp_pb2.ServerErrorResponseType.Name(error_response.type),
            message=error_response.error_message,
        )

    def on_message(self, agent: OpAMPAgent, client: OpAMPClient, message: MessageData) -> None:
        if message.remote_config is None:
            return
        info = _describe_config(message.remote_config)
        keys, parse_error = _parse_body(info["body"])
        with self._lock:
            repeat = self._last_hash == info["hash"]
            self._last_hash = info["hash"]
        emit("remote_config", keys=keys, repeat=repeat, **info)

        mode, error = self._mode.get()
        if mode == "ignore":
            return
        if mode == "fail":
            status, error_message = opamp_pb2.RemoteConfigStatuses_FAILED, error
        elif parse_error is not None:
            status, error_message = opamp_pb2.RemoteConfigStatuses_FAILED, parse_error
        else:
            status, error_message = opamp_pb2.RemoteConfigStatuses_APPLIED, ""
            if info["body"] is not None:
                # Kept by the library and sent with the next full-state report.
                client.update_effective_config({"": info["body"]}, info["contentType"] or "text/yaml")

        config_hash = message.remote_config.config_hash
        status_name = _STATUS_NAMES.get(status, str(status))
        # The library returns None when nothing changed since the last report: nothing to send.
        changed = client.update_remote_config_status(
            remote_config_hash=config_hash,
            status=status,
            error_message=error_message,
        )
        if changed is None:
            emit("config_status_unchanged", hash=info["hash"], status=status_name)
            return
        payload = client.build_remote_config_status_response_message(changed)
        fields = {"hash": info["hash"], "status": status_name, "errorMessage": error_message}
        emit("config_status_queued", **fields)
        # The job callback runs on the worker thread once the request went out (or was given up).
        agent.send(payload, callback=lambda: emit("config_status_sent", **fields))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected k=v, got {text!r}")
    return key, value


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, help="OpAMP HTTP URL, e.g. http://127.0.0.1:4320/v1/opamp")
    p.add_argument("--attr", action="append", type=_key_value, default=[], help="non-identifying k=v (repeatable)")
    p.add_argument(
        "--id-attr",
        action="append",
        type=_key_value,
        default=[],
        help="identifying k=v (repeatable); service.name defaults to python-test-agent",
    )
    p.add_argument(
        "--instance-uid",
        help="UUID to use instead of the library's UUIDv7 (sets the client's private _instance_uid)",
    )
    p.add_argument("--heartbeat-seconds", type=float, default=30.0, help="OpAMPAgent(interval=...)")
    p.add_argument("--request-timeout-ms", type=int, default=5000, help="OpAMPClient(timeout_millis=...)")
    p.add_argument("--initial-backoff-seconds", type=float, default=1.0, help="OpAMPAgent(initial_backoff=...)")
    p.add_argument("--max-retries", type=int, default=10, help="OpAMPAgent(max_retries=...)")
    p.add_argument("--header", action="append", type=_key_value, default=[], help="extra HTTP header k=v")
    p.add_argument("--max-lifetime-seconds", type=float, default=600.0)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mode = Mode()
        self._stop_lock = threading.Lock()
        self._stopped = False

        identifying: dict[str, str] = {"service.name": "python-test-agent"}
        identifying.update(dict(args.id_attr))
        non_identifying = dict(args.attr)
        self.identifying = identifying
        self.non_identifying = non_identifying

        # The library's own RequestsTransport, given a session so a response hook can observe
        # the HTTP exchange (status, Content-Encoding) without changing it.
        self.http = HttpObserver()
        session = requests.Session()
        session.hooks["response"].append(self.http.hook)
        self.client = OpAMPClient(
            endpoint=args.endpoint,
            transport=RequestsTransport(session=session),
            headers=dict(args.header) or None,
            timeout_millis=args.request_timeout_ms,
            agent_identifying_attributes=identifying,
            agent_non_identifying_attributes=non_identifying or None,
        )
        self.uid_source = "library"
        if args.instance_uid:
            # OpAMPClient 0.5b0 always generates a UUIDv7 and has no parameter for it; the value
            # is read from this attribute whenever a message is built, so overriding it before
            # start() is enough.
            if not isinstance(getattr(self.client, "_instance_uid", None), bytes):
                raise SystemExit("this opamp client version has no _instance_uid to override")
            self.client._instance_uid = uuid.UUID(args.instance_uid).bytes  # noqa: SLF001
            self.uid_source = "override"

        self.callbacks = TestAgentCallbacks(self.mode, self.http)
        self.agent = OpAMPAgent(
            interval=args.heartbeat_seconds,
            callbacks=self.callbacks,
            client=self.client,
            max_retries=args.max_retries,
            initial_backoff=args.initial_backoff_seconds,
        )

    @property
    def instance_uid(self) -> str:
        return str(uuid.UUID(bytes=self.client._instance_uid))  # noqa: SLF001

    def start(self) -> None:
        self.agent.start()
        emit(
            "started",
            instanceUid=self.instance_uid,
            instanceUidSource=self.uid_source,
            library="opentelemetry-opamp-client",
            libraryVersion=OPAMP_CLIENT_VERSION,
            endpoint=self.args.endpoint,
            identifying=self.identifying,
            nonIdentifying=self.non_identifying,
            heartbeatSeconds=self.args.heartbeat_seconds,
            pid=os.getpid(),
        )

    def stop(self, reason: str) -> None:
        """Idempotent: AgentDisconnect (sent by the library's stop()), join threads, report."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        started = time.monotonic()
        self._quiesce()
        try:
            # OpAMPAgent.stop() posts AgentDisconnect synchronously, then stops its threads.
            self.agent.stop(timeout=5)
        except Exception as exc:  # noqa: BLE001
            emit("error", source="agent", message=f"stop failed: {exc}")
        # start() registered stop with atexit; unregister so exit does not send a second disconnect.
        atexit.unregister(self.agent.stop)
        emit("stopped", reason=reason, stopMs=round((time.monotonic() - started) * 1000))

    def _quiesce(self, timeout: float = 2.0) -> None:
        """Best effort: stop new heartbeats and let queued requests finish before disconnecting.

        OpAMPAgent.stop() sends AgentDisconnect from the calling thread while its worker may still
        be posting a heartbeat, which the server could then see *after* the disconnect. 0.5b0 has
        no public way to pause, so this touches two private attributes when they exist.
        """
        if hasattr(self.agent, "_schedule"):
            self.agent._schedule = False  # noqa: SLF001
        q = getattr(self.agent, "_queue", None)
        deadline = time.monotonic() + timeout
        while q is not None and getattr(q, "unfinished_tasks", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.02)

    def handle(self, line: str) -> bool:
        """Handle one command line. Returns False when the agent should exit."""
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("command must be a JSON object")
        except ValueError as exc:
            emit("error", source="command", message=f"bad command line: {exc}", line=line)
            return True
        name = cmd.get("cmd")
        if name == "mode":
            remote_config = cmd.get("remoteConfig", "apply")
            if remote_config not in ("apply", "fail", "ignore"):
                emit("error", source="command", message=f"unknown remoteConfig mode {remote_config!r}")
                return True
            error = cmd.get("error")
            self.mode.set(remote_config, None if error is None else str(error))
            emit("ack", cmd="mode", remoteConfig=remote_config, error=self.mode.get()[1])
            return True
        if name == "stop":
            emit("ack", cmd="stop")
            self.stop("command")
            return False
        emit("error", source="command", message=f"unknown cmd {name!r}")
        return True


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s",
    )
    runner = Runner(args)

    def exit_now(reason: str) -> None:
        runner.stop(reason)
        sys.stdout.flush()
        os._exit(0)

    # Safety net: never outlive a crashed test run by more than the max lifetime.
    timer = threading.Timer(args.max_lifetime_seconds, exit_now, args=("max_lifetime",))
    timer.daemon = True
    timer.start()

    signal.signal(signal.SIGTERM, lambda signum, frame: exit_now("signal:SIGTERM"))
    signal.signal(signal.SIGINT, lambda signum, frame: exit_now("signal:SIGINT"))

    try:
        runner.start()
    except Exception as exc:  # noqa: BLE001
        emit("error", source="agent", message=f"start failed: {exc}", trace=traceback.format_exc())
        return 1

    while True:
        line = sys.stdin.readline()
        if line == "":
            runner.stop("stdin_closed")
            return 0
        line = line.strip()
        if not line:
            continue
        if not runner.handle(line):
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
