#!/usr/bin/env python3
# Tail latency, measured from outside: `cargo build --release --example reverse_proxy`,
# then `python3 benches/hedge.py [path/to/reverse_proxy] [extra flags...]`.
#
# Three replicas (a small keep-alive HTTP/1.1 server here, counting what it reads),
# reverse_proxy in front with `--hedge-after-ms 50` unless the extra flags say otherwise
# (`--no-hedge` as the first extra flag runs it without hedging, the baseline).
#   1. the tail: one replica delays 5% of its answers by 1 s; 3,000 GETs from
#      8 connections: the clients' p50/p99/max, and the upstream requests beyond one
#      per GET (hedges, in percent);
#   2. POSTs: 300 POSTs, each must reach the replicas exactly once;
#   3. the fleet slow: every replica takes 200 ms; 800 GETs from 16 connections to a
#      fresh proxy: the extra upstream requests the budget allows.
import http.client, random, socketserver, subprocess, sys, threading, time
from replica import Replica, read_request

lock = threading.Lock()
counts = {"GET": 0, "POST": 0}
posts = {}
behaviour = {}  # port -> (share delayed, delay s, base delay s)

def handler(port):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            while (request := read_request(self.rfile)) is not None:
                method, headers, _ = request
                oid = headers.get("x-id")
                with lock:
                    counts[method] = counts.get(method, 0) + 1
                    if method == "POST":
                        posts[oid] = posts.get(oid, 0) + 1
                share, delay, base = behaviour[port]
                wait = base + (delay if random.random() < share else 0.0)
                if wait:
                    time.sleep(wait)
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:
                    return
    return Handler

ports = [18191, 18192, 18193]
for port in ports:
    behaviour[port] = (0.0, 0.0, 0.0)
    server = Replica(("127.0.0.1", port), handler(port))
    threading.Thread(target=server.serve_forever, daemon=True).start()

args = sys.argv[1:]
binary = args.pop(0) if args and not args[0].startswith("--") else "target/release/examples/reverse_proxy"
flags = ["--hedge-after-ms", "50"]
if args and args[0] == "--no-hedge":
    args.pop(0)
    flags = []

def start_proxy():
    # A fresh proxy for each scenario: its hedging budget holds what the last 10 s
    # of requests paid in, and a scenario is measured from its start.
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:18190"]
                         + sum([["--upstream", f"http://127.0.0.1:{p}"] for p in ports], [])
                         + flags + args,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return p

def run(method, total, connections):
    latencies, failed = [], [0]
    per = total // connections
    def worker(w):
        conn = http.client.HTTPConnection("127.0.0.1", 18190, timeout=10)
        for i in range(per):
            oid = f"{w}-{i}-{random.random()}"
            start = time.perf_counter()
            try:
                conn.request(method, "/items", body=b"x" if method == "POST" else None,
                             headers={"x-id": oid})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except Exception:
                ok = False
                conn = http.client.HTTPConnection("127.0.0.1", 18190, timeout=10)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                failed[0] += not ok
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    return per * connections, failed[0], q(0.5), q(0.99), latencies[-1] * 1000

def upstream(method):
    with lock:
        return counts.get(method, 0)

proxy = start_proxy()
try:
    behaviour[ports[0]] = (0.05, 1.0, 0.0)
    before = upstream("GET")
    n, failed, p50, p99, worst = run("GET", 3000, 8)
    extra = upstream("GET") - before - n
    print(f"tail, one replica delaying 5% by 1 s: {n} GETs, {failed} failed, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms; "
          f"{extra} extra upstream requests ({100.0 * extra / n:.1f}%)")
    n, failed, p50, p99, worst = run("POST", 300, 4)
    once = sum(1 for c in posts.values() if c == 1)
    twice = sum(1 for c in posts.values() if c > 1)
    print(f"POSTs: {n} sent, {failed} failed, {len(posts)} reached a replica, "
          f"{once} exactly once, {twice} more than once")
    proxy.kill()
    proxy.wait()
    proxy = start_proxy()
    for port in ports:
        behaviour[port] = (0.0, 0.0, 0.2)
    before = upstream("GET")
    n, failed, p50, p99, worst = run("GET", 800, 16)
    extra = upstream("GET") - before - n
    print(f"every replica 200 ms slow: {n} GETs, {failed} failed, p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms; {extra} extra upstream requests ({100.0 * extra / n:.1f}%)")
finally:
    proxy.kill()
