// A tiny proxyless xDS client in Node.js: @grpc/grpc-js with @grpc/grpc-js-xds, dialing a
// Service served by `spread xds` (or `spread demo`'s control plane).
//
//   npm ci --ignore-scripts
//   spread xds bootstrap --server 127.0.0.1:18000 > bootstrap.json
//   GRPC_XDS_BOOTSTRAP=bootstrap.json node client.js xds:///be-srv.default:50051 100
//
// prints how many of the calls each pod answered, as JSON. Dial the port by NUMBER: grpc-js
// uses the target's path as the HTTP/2 authority, and Node's URL parser rejects a named
// port ("xds:///be-srv.default:grpc" fails every call with "TypeError: Invalid URL").
//
// With --lines it reads one JSON request per line on stdin instead and answers each with one
// JSON line on stdout, one channel per target (the interop tests drive it this way):
//   {"target": "xds:///…", "n": 100, "name": "t1", "header": "x-user", "key": "u", "distinct": true, "until_pod": "be-6"}
//                                        → {"counts": {"pod": n, …}, "errors": {"CODE: text": n, …}}
//   {"target": "xds:///…", "state": true} → {"state": "IDLE"}
// More request fields: "method": "SayHelloStream" (the pod of the stream's first message);
// "concurrency": k callers share the n calls; "streak_prefix": "be-3", "streak": 400 stops
// once the last 400 answers all came from pods whose names start so. Every answer also
// carries "first" and "last": per pod, when (ms since the epoch) it answered first and last.
'use strict';

const path = require('path');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
require('@grpc/grpc-js-xds').register(); // the xds:/// resolver and the xDS balancers

const args = process.argv.slice(2);
const lines = args.includes('--lines');
const positional = args.filter((a) => !a.startsWith('--'));
const target = positional[0] || 'xds:///be-srv.default:50051';
const protoFile = process.env.ECHO_PROTO || path.join(__dirname, '..', '..', 'echo', 'echo.proto');

const def = protoLoader.loadSync(protoFile, { keepCase: true, longs: String, defaults: true });
const { EchoServer } = grpc.loadPackageDefinition(def).echo;
const options = {};
if (process.env.IDLE_TIMEOUT_MS) options['grpc.client_idle_timeout_ms'] = Number(process.env.IDLE_TIMEOUT_MS);
const clients = new Map(); // one channel per target
function clientFor(t) {
  if (!clients.has(t)) clients.set(t, new EchoServer(t, grpc.credentials.createInsecure(), options));
  return clients.get(t);
}

function sayHello(client, name, md) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 5000);
    client.SayHello({ name }, md, { deadline }, (err, reply) => resolve(err ? { err } : { pod: reply.pod }));
  });
}

function sayHelloStream(client, name, md) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 5000);
    const call = client.SayHelloStream({ name }, md, { deadline });
    let done = false;
    const finish = (r) => {
      if (!done) {
        done = true;
        call.cancel();
        resolve(r);
      }
    };
    call.on('data', (reply) => finish({ pod: reply.pod }));
    call.on('error', (err) => finish({ err }));
    call.on('end', () => finish({ err: { code: grpc.status.UNKNOWN, details: 'stream ended without a message' } }));
  });
}

// calls makes req.n calls, named req.name, over req.concurrency callers (one after another
// each); with req.header each carries it, with the value req.key, or req.key + i when
// req.distinct. With req.until_pod it stops after the first answer from that pod, with
// req.streak_prefix after req.streak answers in a row from pods named so.
async function calls(req) {
  const client = clientFor(req.target || target);
  const call = req.method === 'SayHelloStream' ? sayHelloStream : sayHello;
  const counts = {};
  const errors = {};
  const first = {};
  const last = {};
  const n = req.n || 10;
  let next = 0;
  let streak = 0;
  let stop = false;
  async function caller() {
    while (!stop && next < n) {
      const i = next++;
      const md = new grpc.Metadata();
      if (req.header) md.set(req.header, req.distinct ? `${req.key}${i}` : req.key);
      const r = await call(client, req.name || 'node', md);
      const now = Date.now();
      if (r.err) {
        const k = `${grpc.status[r.err.code]}: ${r.err.details}`;
        errors[k] = (errors[k] || 0) + 1;
        streak = 0;
        continue;
      }
      counts[r.pod] = (counts[r.pod] || 0) + 1;
      if (!(r.pod in first)) first[r.pod] = now;
      last[r.pod] = now;
      if (req.until_pod && r.pod === req.until_pod) stop = true;
      if (req.streak_prefix) {
        streak = r.pod.startsWith(req.streak_prefix) ? streak + 1 : 0;
        if (streak >= req.streak) stop = true;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, req.concurrency || 1) }, caller));
  return { counts, errors, first, last };
}

async function main() {
  if (!lines) {
    console.log(JSON.stringify(await calls({ n: Number(positional[1] || 10) })));
    clients.forEach((c) => c.close());
    return;
  }
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const req = JSON.parse(line);
    if (req.state) {
      const s = clientFor(req.target || target).getChannel().getConnectivityState(false);
      console.log(JSON.stringify({ state: grpc.connectivityState[s] }));
    } else {
      console.log(JSON.stringify(await calls(req)));
    }
  }
  clients.forEach((c) => c.close());
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
