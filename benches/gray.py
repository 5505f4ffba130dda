#!/usr/bin/env python3
# Gray failure, measured from outside: `cargo build --release --example reverse_proxy`,
# then `python3 benches/gray.py [path/to/reverse_proxy] [extra flags...]`. Three replicas
# (a small keep-alive HTTP/1.1 server here), one of which resets 30% of the requests it
# reads before answering (a TCP RST, so never five in a row for long); reverse_proxy with
# default flags in front; 3,000 POSTs one after another. Prints how many failed: a POST
# that may have reached a replica is never retried, so each reset one fails unless the
# gray replica is found. `--failure-rate-window 0` as an extra flag gives the baseline.
import http.client, random, socket, socketserver, struct, subprocess, sys, threading, time
from replica import Replica, read_request

def handler(fail_share):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            while read_request(self.rfile) is not None:
                if random.random() < fail_share:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return Handler

ports = [18091, 18092, 18093]
shares = [0.0, 0.0, 0.3]
for port, share in zip(ports, shares):
    server = Replica(("127.0.0.1", port), handler(share))
    threading.Thread(target=server.serve_forever, daemon=True).start()
binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/reverse_proxy"
proxy = subprocess.Popen([binary, "--listen", "127.0.0.1:18090"]
                         + sum([["--upstream", f"http://127.0.0.1:{p}"] for p in ports], [])
                         + sys.argv[2:],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.0)
failed = 0
total = 3000
conn = http.client.HTTPConnection("127.0.0.1", 18090, timeout=5)
for i in range(total):
    try:
        conn.request("POST", "/orders", body=f"order-{i}".encode())
        r = conn.getresponse()
        r.read()
        failed += r.status != 200
    except Exception:
        failed += 1
        conn = http.client.HTTPConnection("127.0.0.1", 18090, timeout=5)
proxy.kill()
print(f"{failed} of {total} POSTs failed ({100.0 * failed / total:.2f}%)")
