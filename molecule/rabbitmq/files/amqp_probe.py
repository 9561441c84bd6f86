#!/usr/bin/python3
"""A small AMQP 0-9-1 client (Debian's python3-pika) for the tests and the bench.

Runs on the RabbitMQ nodes; prints one JSON object. The password comes from
the AMQP_PASSWORD environment variable. Subcommands:

  login                      connect and open a channel (or print the refusal)
  publish                    publish persistent messages with publisher confirms
  get                        fetch up to --count messages (ack, reject or requeue)
  count                      a queue's message count (passive declare)
  declare-app                redeclare the app's topology exactly as app/src/aiinfra_app/messaging.py does
  bench                      publish and consume --count messages through one quorum queue
  soak                       publish (confirms) and consume at once through a quorum queue across
                             --hosts, reconnecting to another node when one goes away, until
                             --stop-file exists; reports every confirmed id that was not consumed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from typing import Any

import pika  # type: ignore[import-not-found,unused-ignore]
from pika.exceptions import AMQPError  # type: ignore[import-not-found,unused-ignore]


def _params(args: argparse.Namespace) -> Any:
    credentials = pika.PlainCredentials(args.user, os.environ.get("AMQP_PASSWORD", ""))
    return pika.ConnectionParameters(
        host=args.host,
        port=args.port,
        virtual_host=args.vhost,
        credentials=credentials,
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=30,
    )


def _connect(args: argparse.Namespace) -> Any:
    return pika.BlockingConnection(_params(args))


def cmd_login(args: argparse.Namespace) -> dict[str, Any]:
    try:
        conn = _connect(args)
        conn.channel()
        conn.close()
    except AMQPError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc!r}"}
    return {"ok": True}


def cmd_publish(args: argparse.Namespace) -> dict[str, Any]:
    conn = _connect(args)
    channel = conn.channel()
    channel.confirm_delivery()
    confirmed, refused = 0, 0
    for index in range(args.count):
        props = pika.BasicProperties(
            delivery_mode=2,
            priority=args.priority,
            content_type="text/plain",
        )
        body = args.body if args.count == 1 else f"{args.body}-{index}"
        try:
            channel.basic_publish(args.exchange, args.routing_key, body.encode(), props, mandatory=True)
            confirmed += 1
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            refused += 1
    conn.close()
    return {"confirmed": confirmed, "refused": refused}


def _death_reasons(props: Any) -> list[str]:
    deaths = (props.headers or {}).get("x-death") or []
    return [str(d.get("reason")) for d in deaths]


def cmd_get(args: argparse.Namespace) -> dict[str, Any]:
    conn = _connect(args)
    channel = conn.channel()
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.wait
    while len(messages) < args.count:
        method, props, body = channel.basic_get(args.queue, auto_ack=False)
        if method is None:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
            continue
        messages.append(
            {
                "body": body.decode(),
                "priority": props.priority,
                "delivery_mode": props.delivery_mode,
                "deaths": _death_reasons(props),
            }
        )
        if args.action == "ack":
            channel.basic_ack(method.delivery_tag)
        elif args.action == "reject":
            channel.basic_reject(method.delivery_tag, requeue=False)
        # requeue: leave them unacknowledged (a nack now would hand the same
        # message back to the next get); closing the channel returns them all.
    conn.close()
    return {"messages": messages}


def cmd_count(args: argparse.Namespace) -> dict[str, Any]:
    conn = _connect(args)
    result = conn.channel().queue_declare(args.queue, passive=True)
    conn.close()
    return {"messages": result.method.message_count}


def cmd_declare_app(args: argparse.Namespace) -> dict[str, Any]:
    """The app's declare_topology(), argument for argument, then a consumer on the task queue (the worker)."""
    conn = _connect(args)
    channel = conn.channel()
    queue_type = {"x-queue-type": "quorum"}
    channel.exchange_declare("events", "topic", durable=True)
    channel.exchange_declare("tasks.dlx", "direct", durable=True)
    channel.queue_declare("tasks.index.dead", durable=True, arguments=queue_type)
    channel.queue_bind("tasks.index.dead", "tasks.dlx", routing_key="tasks.index.dead")
    channel.queue_declare(
        "tasks.index",
        durable=True,
        arguments={
            **queue_type,
            "x-dead-letter-exchange": "tasks.dlx",
            "x-dead-letter-routing-key": "tasks.index.dead",
        },
    )
    tag = channel.basic_consume("tasks.index", lambda *_: None)
    channel.basic_cancel(tag)
    conn.close()
    return {"ok": True}


def _bench_publish(args: argparse.Namespace, body: bytes) -> float:
    """Publish with confirms, up to --window unconfirmed at a time; return seconds."""
    state = {"next": 0, "confirmed": 0, "refused": 0}
    outstanding: set[int] = set()
    opened: dict[str, Any] = {}
    props = pika.BasicProperties(delivery_mode=2)
    started = time.monotonic()

    def publish_more(channel: Any) -> None:
        while len(outstanding) < args.window and state["next"] < args.count:
            channel.basic_publish("", args.queue, body, props)
            state["next"] += 1
            outstanding.add(state["next"])

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        done = {t for t in outstanding if t <= tag} if method.multiple else {tag}
        outstanding.difference_update(done)
        key = "confirmed" if isinstance(method, pika.spec.Basic.Ack) else "refused"
        state[key] += len(done)
        if state["confirmed"] + state["refused"] >= args.count:
            opened["channel"].connection.close()
        else:
            publish_more(opened["channel"])

    def on_channel(channel: Any) -> None:
        opened["channel"] = channel
        channel.confirm_delivery(on_confirm)
        publish_more(channel)

    # Closing a SelectConnection does not end its ioloop: stop it, or start() never returns.
    conn = pika.SelectConnection(
        _params(args),
        on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=lambda c, _exc: c.ioloop.stop(),
        on_close_callback=lambda c, _exc: c.ioloop.stop(),
    )
    conn.ioloop.start()
    elapsed = time.monotonic() - started
    if state["refused"] or state["confirmed"] != args.count:
        raise SystemExit(f"publish: {state['confirmed']} confirmed, {state['refused']} refused of {args.count}")
    return elapsed


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    setup = _connect(args)
    channel = setup.channel()
    channel.queue_delete(args.queue)
    channel.queue_declare(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    body = b"x" * args.size
    publish_s = _bench_publish(args, body)
    setup.process_data_events(0)
    channel.basic_qos(prefetch_count=args.window)
    received = 0
    started = time.monotonic()
    for method, _props, _body in channel.consume(args.queue, inactivity_timeout=30):
        if method is None:
            break
        received += 1
        if received % 100 == 0 or received == args.count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if received == args.count:
            break
    consume_s = time.monotonic() - started
    channel.cancel()
    channel.queue_delete(args.queue)
    setup.close()
    return {
        "count": args.count,
        "size": args.size,
        "publish_s": round(publish_s, 3),
        "publish_per_s": round(args.count / publish_s),
        "received": received,
        "consume_s": round(consume_s, 3),
        "consume_per_s": round(received / consume_s) if consume_s else 0,
    }


def _close_quietly(conn: Any) -> None:
    """Close a connection that may already be gone."""
    if conn is not None:
        with contextlib.suppress(AMQPError, OSError):
            conn.close()


def _connect_any(args: argparse.Namespace, hosts: list[str], start: int) -> Any:
    """Connect to the first of hosts (rotated by start) that accepts."""
    for offset in range(len(hosts)):
        args.host = hosts[(start + offset) % len(hosts)]
        try:
            return _connect(args)
        except (AMQPError, OSError):
            continue
    return None


def _soak_publish(args: argparse.Namespace, hosts: list[str], queue: str, run: str, out: dict[str, Any]) -> None:
    """Publish persistent messages one at a time with publisher confirms; a message whose confirm did not
    arrive (connection lost, nack) is published again with the same id after a reconnect."""
    confirmed: list[str] = out["confirmed_ids"]
    conn: Any = None
    channel: Any = None
    seq, start = 0, 0
    deadline = time.monotonic() + args.max_seconds
    interval = 1.0 / args.rate
    while seq < args.count and not os.path.exists(args.stop_file) and time.monotonic() < deadline:
        if conn is None:
            conn = _connect_any(args, hosts, start)
            start += 1
            if conn is None:
                time.sleep(0.5)
                continue
            channel = conn.channel()
            channel.confirm_delivery()
        msg_id = f"{run}-{seq}"
        props = pika.BasicProperties(delivery_mode=2, message_id=msg_id)
        unconfirmed = True
        try:
            channel.basic_publish("", queue, msg_id.encode(), props, mandatory=True)
            unconfirmed = False
            confirmed.append(msg_id)
            seq += 1
            conn.sleep(interval)
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            out["nacked"] += 1
            continue
        except (AMQPError, OSError):
            out["publisher_reconnects"] += 1
            out["republished"] += int(unconfirmed)
            _close_quietly(conn)
            conn = None
            continue
    out["stopped_by"] = "stop-file" if os.path.exists(args.stop_file) else "count-or-time"
    _close_quietly(conn)


def _soak_consume(
    args: argparse.Namespace, hosts: list[str], queue: str, out: dict[str, Any], published: threading.Event
) -> None:
    """Consume and ack every message (manual acks, prefetch 50) until the publisher finished and every id
    it had confirmed arrived, reconnecting to another node when one goes away."""
    consumed: dict[str, int] = out["consumed"]
    conn, start = None, len(hosts) - 1
    idle_limit = time.monotonic() + args.max_seconds + 120
    while time.monotonic() < idle_limit:
        if published.is_set() and set(out["confirmed_ids"]) <= consumed.keys():
            break
        if conn is None:
            conn = _connect_any(args, hosts, start)
            start += 1
            if conn is None:
                time.sleep(0.5)
                continue
        try:
            channel = conn.channel()
            channel.basic_qos(prefetch_count=50)
            for method, props, body in channel.consume(queue, inactivity_timeout=1):
                if method is not None:
                    msg_id = props.message_id or body.decode()
                    consumed[msg_id] = consumed.get(msg_id, 0) + 1
                    channel.basic_ack(method.delivery_tag)
                elif published.is_set() and set(out["confirmed_ids"]) <= consumed.keys():
                    break
                if time.monotonic() >= idle_limit:
                    break
            channel.cancel()
        except (AMQPError, OSError):
            out["consumer_reconnects"] += 1
            _close_quietly(conn)
            conn = None
    _close_quietly(conn)


def cmd_soak(args: argparse.Namespace) -> dict[str, Any]:
    hosts = args.hosts.split(",")
    queue = args.queue
    setup = _connect_any(args, hosts, 0)
    if setup is None:
        return {"error": f"no node of {hosts} accepts connections"}
    channel = setup.channel()
    channel.queue_delete(queue)
    replicas = len(hosts)
    channel.queue_declare(
        queue, durable=True, arguments={"x-queue-type": "quorum", "x-quorum-initial-group-size": replicas}
    )
    setup.close()
    if os.path.exists(args.stop_file):
        os.unlink(args.stop_file)
    run = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {
        "confirmed_ids": [],
        "consumed": {},
        "nacked": 0,
        "republished": 0,
        "publisher_reconnects": 0,
        "consumer_reconnects": 0,
    }
    published = threading.Event()
    consumer = threading.Thread(target=_soak_consume, args=(args, hosts, queue, out, published), daemon=True)
    consumer.start()
    print(json.dumps({"started": run, "replicas": replicas}), flush=True)
    started = time.monotonic()
    _soak_publish(args, hosts, queue, run, out)
    published.set()
    consumer.join()
    elapsed = time.monotonic() - started
    confirmed = out["confirmed_ids"]
    consumed: dict[str, int] = out["consumed"]
    attempted = {f"{run}-{seq}" for seq in range(len(confirmed) + 1)}
    cleanup = _connect_any(args, hosts, 0)
    if cleanup is not None:
        with contextlib.suppress(AMQPError, OSError):
            cleanup.channel().queue_delete(queue)
        _close_quietly(cleanup)
    return {
        "confirmed": len(confirmed),
        "confirmed_unique": len(set(confirmed)),
        "consumed_unique": len(consumed),
        "missing": sorted(set(confirmed) - consumed.keys()),
        "unexpected": sorted(consumed.keys() - attempted),
        "duplicates": sum(n - 1 for n in consumed.values()),
        "nacked": out["nacked"],
        "republished": out["republished"],
        "publisher_reconnects": out["publisher_reconnects"],
        "consumer_reconnects": out["consumer_reconnects"],
        "stopped_by": out["stopped_by"],
        "seconds": round(elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["login", "publish", "get", "count", "declare-app", "bench", "soak"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--vhost", default="/")
    parser.add_argument("--user", default="guest")
    parser.add_argument("--exchange", default="")
    parser.add_argument("--routing-key", default="")
    parser.add_argument("--queue", default="")
    parser.add_argument("--body", default="probe")
    parser.add_argument("--priority", type=int, default=None)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--wait", type=float, default=0.0, help="seconds get waits for messages to arrive")
    parser.add_argument("--action", choices=["ack", "reject", "requeue"], default="ack")
    parser.add_argument("--size", type=int, default=512, help="bench message size in bytes")
    parser.add_argument("--window", type=int, default=256, help="bench: unconfirmed publishes / prefetch")
    parser.add_argument("--hosts", default="127.0.0.1", help="soak: comma-separated nodes, tried in turn")
    parser.add_argument("--rate", type=float, default=20.0, help="soak: publishes per second at most")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="soak: publishing stops after this long")
    parser.add_argument("--stop-file", default="/tmp/amqp-soak.stop", help="soak: publishing stops once it exists")
    args = parser.parse_args()
    commands = {
        "login": cmd_login,
        "publish": cmd_publish,
        "get": cmd_get,
        "count": cmd_count,
        "declare-app": cmd_declare_app,
        "bench": cmd_bench,
        "soak": cmd_soak,
    }
    try:
        result = commands[args.command](args)
    except AMQPError as exc:
        result = {"error": f"{type(exc).__name__}: {exc!r}"}
        print(json.dumps(result))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
