#!/usr/bin/env python3
"""Paho's interoperability suite, in the sequence it fails on for a broker
that does not apply a SUBSCRIBE before a PUBLISH that arrives after it.

Two MQTT 5 clients on one broker, run without network threads so that each
call writes its packet at once, from this thread: per round, B subscribes
and, without waiting for SUBACK, A publishes at QoS 1 to that topic. Once
A has its PUBACK and B its SUBACK, A publishes a marker to a topic B
subscribed to at the start; the broker delivers to B in routing order, so
a marker that arrives before the round's message means the message was
routed before the SUBSCRIBE took effect: a miss.

Usage: subscribe_race.py HOST PORT ROUNDS; prints {"rounds": N, "missed": M}.
"""

import json
import select
import socket
import sys
import time

import paho.mqtt.client as mqtt

TIMEOUT = 15.0


def make_client(client_id):
    kwargs = {"client_id": client_id, "protocol": mqtt.MQTTv5}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
    return mqtt.Client(**kwargs)


class State:
    def __init__(self):
        self.subacks = set()
        self.pubacks = set()
        self.unsubacks = set()
        self.messages = []


def main():
    host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    st = State()
    a, b = make_client("race-a"), make_client("race-b")
    b.on_subscribe = lambda c, u, mid, *rest: st.subacks.add(mid)
    b.on_unsubscribe = lambda c, u, mid, *rest: st.unsubacks.add(mid)
    a.on_publish = lambda c, u, mid, *rest: st.pubacks.add(mid)
    b.on_message = lambda c, u, msg: st.messages.append(msg.topic)

    def pump(done, what):
        deadline = time.monotonic() + TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for " + what)
            ready, _, _ = select.select([a.socket(), b.socket()], [], [], 0.05)
            for c in (a, b):
                if c.socket() in ready:
                    c.loop_read()
                if c.want_write():  # what callbacks queued
                    c.loop_write()

    for c in (a, b):
        c.connect(host, port, keepalive=60, clean_start=True)
        # Each packet leaves when written, as from the suite's own client,
        # not held back by Nagle until the previous one is acknowledged.
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pump(lambda: a.is_connected() and b.is_connected(), "CONNACK")
    mid = b.subscribe("race/marker", qos=1)[1]
    pump(lambda: mid in st.subacks, "the marker's SUBACK")

    missed = 0
    for i in range(rounds):
        topic = "race/%d" % i
        st.messages.clear()
        sub_mid = b.subscribe(topic, qos=1)[1]
        pub_mid = a.publish(topic, b"m", qos=1).mid
        pump(lambda: sub_mid in st.subacks and pub_mid in st.pubacks, "SUBACK and PUBACK")
        a.publish("race/marker", b"%d" % i, qos=1)
        pump(lambda: "race/marker" in st.messages, "the marker")
        # B's PUBACKs, queued from inside callbacks, must not travel with
        # the next SUBSCRIBE: a broker that takes one packet per socket per
        # turn, as Mosquitto does, would serve A's PUBLISH in between. The
        # UNSUBACK comes after the broker has read them.
        unsub_mid = b.unsubscribe(topic)[1]
        pump(lambda: unsub_mid in st.unsubacks, "UNSUBACK")
        if topic not in st.messages:
            missed += 1
    print(json.dumps({"rounds": rounds, "missed": missed}))
    for c in (a, b):
        c.disconnect()


if __name__ == "__main__":
    main()
