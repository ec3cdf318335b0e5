#!/usr/bin/env python3
"""An MQTT client built on Eclipse paho-mqtt, driven line by line.

The interop tests start this script, write one JSON command a line on its
standard input and read one JSON event a line from its standard output
(peer_test.go describes the protocol). Each command gets exactly one reply,
{"ev": <op>, ...} or {"ev": "error", ...}; received messages arrive at any
time as {"ev": "message", ...}.

Works with paho-mqtt 1.6 (Debian 12's python3-paho-mqtt) and 2.x, whose
constructor and callback signatures differ.
"""

import json
import os
import sys
import threading
from urllib.parse import urlparse

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

TIMEOUT = 15.0
OPS = ("connect", "subscribe", "publish", "disconnect", "drop")

_out = threading.Lock()


def emit(**event):
    line = json.dumps(event)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def code(rc):
    """An int from an int or a paho ReasonCodes/ReasonCode."""
    return getattr(rc, "value", rc)


class Peer:
    def __init__(self):
        self.client = None
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = {}
        self.subacks = {}

    # Callbacks take what both paho 1.6 and 2.x pass.

    def on_connect(self, client, userdata, flags, rc, properties=None):
        if hasattr(flags, "session_present"):
            present = bool(flags.session_present)
        else:
            present = bool(flags.get("session present"))
        self.connack = {"rc": code(rc), "session_present": present}
        self.connected.set()

    def on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self.lock:
            waiter = self.subacks.get(mid)
        if waiter is not None:
            waiter["granted"] = [code(g) for g in granted]
            waiter["done"].set()

    def on_message(self, client, userdata, msg):
        emit(ev="message", topic=msg.topic,
             payload=msg.payload.decode("utf-8", "replace"),
             qos=msg.qos, retain=bool(msg.retain))

    def on_disconnect(self, client, userdata, *rest):
        self.disconnected.set()

    # Commands.

    def connect(self, cmd):
        url = urlparse(cmd["url"])
        v5 = cmd.get("version", 4) == 5
        transport = "websockets" if url.scheme in ("ws", "wss") else "tcp"
        kwargs = {"client_id": cmd["id"], "transport": transport,
                  "protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311}
        if not v5:
            kwargs["clean_session"] = cmd.get("clean", True)
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
            kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
        client = mqtt.Client(**kwargs)
        client.on_connect = self.on_connect
        client.on_subscribe = self.on_subscribe
        client.on_message = self.on_message
        client.on_disconnect = self.on_disconnect
        if transport == "websockets":
            client.ws_set_options(path=url.path or "/mqtt")
        will = cmd.get("will")
        if will:
            client.will_set(will["topic"], will.get("payload", ""),
                            will.get("qos", 0), will.get("retain", False))
        self.connected.clear()
        self.disconnected.clear()
        args = {"host": url.hostname, "port": url.port, "keepalive": 30}
        if v5:
            args["clean_start"] = cmd.get("clean", True)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cmd.get("expiry", 0)
            args["properties"] = props
        client.connect(**args)
        client.loop_start()
        self.client = client
        if not self.connected.wait(TIMEOUT):
            raise RuntimeError("no CONNACK within %ss" % TIMEOUT)
        if self.connack["rc"] != 0:
            raise RuntimeError("CONNACK refused: %s" % self.connack["rc"])
        return {"session_present": self.connack["session_present"]}

    def subscribe(self, cmd):
        waiter = {"done": threading.Event()}
        # Held so that the SUBACK callback finds the waiter registered.
        with self.lock:
            rc, mid = self.client.subscribe(cmd["topic"], cmd.get("qos", 0))
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError("subscribe: %s" % mqtt.error_string(rc))
            self.subacks[mid] = waiter
        if not waiter["done"].wait(TIMEOUT):
            raise RuntimeError("no SUBACK within %ss" % TIMEOUT)
        return {"granted": waiter["granted"]}

    def publish(self, cmd):
        info = self.client.publish(cmd["topic"], cmd.get("payload", ""),
                                   cmd.get("qos", 0), cmd.get("retain", False))
        # For QoS 1 and 2 this waits for PUBACK or PUBCOMP.
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            raise RuntimeError("publish not acknowledged within %ss" % TIMEOUT)
        return {}

    def disconnect(self, cmd):
        self.client.disconnect()
        if not self.disconnected.wait(TIMEOUT):
            raise RuntimeError("not disconnected within %ss" % TIMEOUT)
        self.client.loop_stop()
        self.client = None
        return {}

    def drop(self, cmd):
        # A crash: the process ends and the kernel closes the socket, no
        # DISCONNECT sent.
        emit(ev="drop")
        os._exit(0)


def main():
    peer = Peer()
    emit(ev="ready", client="paho-mqtt %s (Python %s)" % (
        paho.mqtt.__version__, sys.version.split()[0]))
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd.get("op", "")
        if op not in OPS:
            emit(ev="error", op=op, error="unknown op")
            continue
        try:
            reply = getattr(peer, op)(cmd)
        except Exception as e:  # the test reads the reason
            emit(ev="error", op=op, error="%s: %s" % (type(e).__name__, e))
            continue
        emit(ev=op, **reply)
    if peer.client is not None:
        peer.client.loop_stop()


if __name__ == "__main__":
    main()
