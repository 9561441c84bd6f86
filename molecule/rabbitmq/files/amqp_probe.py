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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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

    conn = pika.SelectConnection(_params(args), on_open_callback=lambda c: c.channel(on_open_callback=on_channel))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["login", "publish", "get", "count", "declare-app", "bench"])
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
    args = parser.parse_args()
    commands = {
        "login": cmd_login,
        "publish": cmd_publish,
        "get": cmd_get,
        "count": cmd_count,
        "declare-app": cmd_declare_app,
        "bench": cmd_bench,
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
