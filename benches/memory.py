#!/usr/bin/env python3
"""Memory per in-flight request, and across bursts, of the reverse_proxy example.

    cargo build --release --example reverse_proxy
    python3 benches/memory.py [--requests 2000] [--bursts 3] [--bin PATH] [-- proxy flags]
    python3 benches/memory.py --nginx      # nginx (one worker) measured the same way

A stalling upstream (reads each request, never answers) runs in this process. Each
burst opens N client connections to the proxy, sends one GET on each, waits until
the upstream holds all N, samples the proxy's resident memory (VmRSS), then closes
the clients and waits for the proxy to let go. Reported: the RSS before any
request, the RSS with N in flight and its growth per request, and each burst's
peak. Run by hand (not in CI): it needs about 4 N file descriptors.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--bin", default="target/release/examples/reverse_proxy")
    parser.add_argument("--port", type=int, default=39123)
    parser.add_argument("--nginx", action="store_true", help="measure nginx's worker instead")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()

    held = []  # upstream connections held open

    async def stall(reader, writer):
        held.append(writer)
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            held.remove(writer)
            writer.close()

    upstream = await asyncio.start_server(stall, "127.0.0.1", 0, backlog=4096)
    up_port = upstream.sockets[0].getsockname()[1]
    if args.nginx:
        work = tempfile.mkdtemp()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log crit;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
  proxy_read_timeout 600s;
  server {{ listen 127.0.0.1:{args.port}; location / {{ proxy_pass http://127.0.0.1:{up_port}; }} }}
}}
""")
        proxy = subprocess.Popen(["nginx", "-p", work, "-c", conf], stdout=subprocess.DEVNULL)
    else:
        proxy = subprocess.Popen(
            [args.bin, "--listen", f"127.0.0.1:{args.port}", "--upstream", f"http://127.0.0.1:{up_port}",
             "--timeout-ms", "600000", *args.rest],
            stdout=subprocess.DEVNULL,
        )
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", args.port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        measured = proxy.pid
        if args.nginx:  # the worker, the master's one child
            with open(f"/proc/{proxy.pid}/task/{proxy.pid}/children") as f:
                measured = int(f.read().split()[0])
        base = rss_kib(measured)
        print(f"proxy RSS at rest: {base / 1024:.1f} MiB")
        peaks = []
        for burst in range(1, args.bursts + 1):
            clients = []
            peak = rss_kib(measured)
            for i in range(args.requests):
                r, w = await asyncio.open_connection("127.0.0.1", args.port)
                w.write(b"GET /stall HTTP/1.1\r\nhost: proxy\r\n\r\n")
                clients.append((r, w))
                if i % 100 == 0:
                    await asyncio.sleep(0)
                    peak = max(peak, rss_kib(measured))
            start = time.monotonic()
            while len(held) < args.requests and time.monotonic() - start < 60:
                await asyncio.sleep(0.05)
                peak = max(peak, rss_kib(measured))
            await asyncio.sleep(0.5)
            now = rss_kib(measured)
            peak = max(peak, now)
            per = (now - base) / args.requests
            print(f"burst {burst}: {len(held)} in flight, RSS {now / 1024:.1f} MiB, "
                  f"{per:.1f} KiB per in-flight request over rest, peak {peak / 1024:.1f} MiB")
            peaks.append(peak)
            for _, w in clients:
                w.close()
            start = time.monotonic()
            while held and time.monotonic() - start < 30:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            print(f"         after it: RSS {rss_kib(measured) / 1024:.1f} MiB")
        if len(peaks) >= 3:
            print(f"third burst's peak / second's: {peaks[2] / peaks[1]:.3f}")
    finally:
        proxy.terminate()
        proxy.wait()
        upstream.close()


if __name__ == "__main__":
    asyncio.run(main())
