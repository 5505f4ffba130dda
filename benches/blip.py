#!/usr/bin/env python3
# Correlated outage, measured from outside: `cargo build --release --example reverse_proxy`,
# then `python3 benches/blip.py [path/to/reverse_proxy]`. Three replicas (python http.server),
# reverse_proxy with default flags in front, all three killed for 1.5 s, then restarted;
# a client GETs every 10 ms and the script prints how long after the replicas were back
# (listening again) clients still got failures.
import subprocess, time, urllib.request, urllib.error, sys, signal, os
ports = [18081, 18082, 18083]
def start(p):
    return subprocess.Popen([sys.executable, "-m", "http.server", str(p), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.path.dirname(os.path.abspath(__file__)))
reps = [start(p) for p in ports]
proxy = subprocess.Popen([(sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/reverse_proxy"), "--listen", "127.0.0.1:18080"]
                         + sum([["--upstream", f"http://127.0.0.1:{p}"] for p in ports], []),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.0)
def get():
    try:
        with urllib.request.urlopen("http://127.0.0.1:18080/", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return -1
log = []
t0 = time.monotonic()
down_at = up_at = None
while time.monotonic() - t0 < 16:
    now = time.monotonic() - t0
    if down_at is None and now > 2.0:
        for r in reps: r.kill()
        for r in reps: r.wait()
        down_at = now
    if down_at is not None and up_at is None and now > down_at + 1.5:
        reps = [start(p) for p in ports]
        time.sleep(0.3)  # python's server takes a moment to listen
        up_at = time.monotonic() - t0
    log.append((time.monotonic() - t0, get()))
    time.sleep(0.01)
for r in reps: r.kill()
proxy.kill()
bad_after = [t for t, s in log if up_at is not None and t > up_at and s != 200]
statuses = {}
for t, s in log:
    if down_at <= t <= up_at: statuses[s] = statuses.get(s, 0) + 1
print(f"down at {down_at:.2f} s, back (listening) at {up_at:.2f} s")
print("answers while down:", statuses)
print("non-200 after back:", len(bad_after), "last at +%.2f s" % ((max(bad_after) - up_at) if bad_after else 0.0))
print("requests:", len(log))
