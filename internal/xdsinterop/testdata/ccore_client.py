"""A gRPC C-core xDS client (Debian's python3-grpcio), driven by the interop tests.

Run with /usr/bin/python3 (Debian's packages live in /usr/lib/python3/dist-packages), with
GRPC_XDS_BOOTSTRAP naming the bootstrap file:

    GRPC_XDS_BOOTSTRAP=bootstrap.json /usr/bin/python3 ccore_client.py xds:///be.default:50051

It reads one JSON request per line on stdin and answers each with one JSON line, on one
channel per target (the same protocol as examples/node/client.js --lines):

    {"target": "xds:///...", "n": 100, "name": "t1", "until_pod": "be-6", "header": "x-user", "key": "u", "distinct": true} -> {"counts": {...}, "errors": {...}}
    {"state": true}                                              -> {"state": "IDLE"}
    {"version": true}                                            -> {"version": "1.51.1"}

No generated code: SayHello's request and reply are encoded by hand (field 1 name, field 2 pod).
"""
import json
import os
import sys

import grpc


def encode_request(name):
    b = name.encode()
    return bytes([0x0A, len(b)]) + b


def decode_pod(data):
    """Returns field 2 (pod) of an EchoReply."""
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, shift = 0, 0
            while True:
                c = data[i]
                i += 1
                n |= (c & 0x7F) << shift
                shift += 7
                if c < 0x80:
                    break
            if field == 2:
                return data[i:i + n].decode()
            i += n
        elif wire == 0:
            while data[i] & 0x80:
                i += 1
            i += 1
        else:
            raise ValueError("unexpected wire type %d" % wire)
    return ""


class Channel:
    """One channel to one target, with its connectivity state."""

    def __init__(self, target, options):
        self.channel = grpc.insecure_channel(target, options=options)
        self.state = grpc.ChannelConnectivity.IDLE
        self.channel.subscribe(self._watch, try_to_connect=False)
        self.say = self.channel.unary_unary("/echo.EchoServer/SayHello", request_serializer=lambda b: b,
                                            response_deserializer=lambda b: b)

    def _watch(self, s):
        self.state = s


def main():
    default_target = sys.argv[1]
    options = []
    if os.environ.get("IDLE_TIMEOUT_MS"):
        options.append(("grpc.client_idle_timeout_ms", int(os.environ["IDLE_TIMEOUT_MS"])))
    channels = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        target = req.get("target") or default_target
        if target not in channels:
            channels[target] = Channel(target, options)
        ch = channels[target]
        if req.get("state"):
            out = {"state": ch.state.name}
        elif req.get("version"):
            out = {"version": grpc.__version__}
        else:
            counts, errors = {}, {}
            for i in range(req.get("n", 10)):
                md = ()
                if req.get("header"):
                    v = req["key"] + (str(i) if req.get("distinct") else "")
                    md = ((req["header"], v),)
                try:
                    pod = decode_pod(ch.say(encode_request(req.get("name") or "python"), metadata=md, timeout=5))
                except grpc.RpcError as e:
                    k = "%s: %s" % (e.code().name, e.details())
                    errors[k] = errors.get(k, 0) + 1
                    continue
                counts[pod] = counts.get(pod, 0) + 1
                if req.get("until_pod") and pod == req["until_pod"]:
                    break
            out = {"counts": counts, "errors": errors}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    for ch in channels.values():
        ch.channel.close()


if __name__ == "__main__":
    main()
