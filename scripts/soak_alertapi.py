#!/usr/bin/env python3
"""Hostile input against the scaler (`starvation alertapi`), side by side for one or more
binaries, on loopback. A measurement, not a test: it prints figures to quote.

    scripts/soak_alertapi.py target/release/starvation [/tmp/starvation-before ...]
    SOAK_SCENARIOS=slow scripts/soak_alertapi.py target/release/starvation   # only some

Each binary runs `alertapi --orchestrator local` (its replicas are real `starvation serve`
processes: each scale-up spawns one and waits for it to listen, 100-300 ms) and meets, in turn:

  uploads   300 unauthenticated uploads of 512 KiB of a claimed 1 MiB body: server RSS
  flood     one webhook of N distinct alerts (N = 1k..10k) and, 10 ms later, a one-alert
            webhook: how long each took
  names     30 webhooks of 1,000 distinct alerts with 500-character names: RSS, /events and
            status page sizes
  soak      1,000 concurrent webhooks: 500 distinct alerts, each sent twice (a retry):
            decisions counted (the held-back ones act one per 1 s cooldown), RSS before and
            after
  slow      the soak against a slow orchestrator: `alertapi --orchestrator swarm` with
            DOCKER_HOST pointing at a stand-in Docker Engine in this script whose service
            update takes 200 ms (reads answer at once); the updates it received are counted

Only Python's standard library; RSS from /proc/PID/status (the scaler alone, not its replicas).
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TOKEN = "soak-token"
T1 = "2026-11-22T10:00:00Z"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, workdir, engine=None):
    env = dict(os.environ, STARVATION_ALERTAPI_TOKEN=TOKEN, RUST_LOG="error")
    backend = ["--orchestrator", "local", "--local-listen", f"127.0.0.1:{free_port()}",
               "--local-serve-arg=--block-ms=0"]
    if engine:
        env["DOCKER_HOST"] = f"tcp://127.0.0.1:{engine}"
        backend = ["--orchestrator", "swarm"]
    proc = subprocess.Popen(
        [binary, "alertapi", "--listen", "127.0.0.1:0", "--default-service", "web",
         "--max", "10", "--cooldown", "1s", "--events", "5000", *backend],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on http://"), line
    host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
    return proc, (host, int(port))


def request(addr, method, path, body=None, timeout=120):
    req = urllib.request.Request(f"http://{addr[0]}:{addr[1]}{path}", data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def webhook(alerts):
    body = {"version": "4", "status": "firing", "alerts": alerts}
    return json.dumps(body, separators=(",", ":")).encode()


def alert(fp, name="S", starts_at=T1):
    return {"status": "firing", "labels": {"alertname": name}, "startsAt": starts_at,
            "fingerprint": fp}


def server_seconds(addr):
    """The scaler's own total webhook handling time so far (its histogram's sum)."""
    _, text = request(addr, "GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith("starvation_webhook_duration_seconds_sum"):
            return float(line.split()[-1])
    return float("nan")


def uploads(proc, addr):
    before = rss_mb(proc.pid)
    head = (b"POST /alert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1048576\r\n\r\n")
    chunk = b"x" * 65536
    socks = []
    for _ in range(300):
        s = socket.create_connection(addr)
        s.settimeout(2)
        try:
            s.sendall(head)
            for _ in range(8):
                s.sendall(chunk)
        except OSError:
            pass
        socks.append(s)
    time.sleep(1)
    during = rss_mb(proc.pid)
    for s in socks:
        s.close()
    time.sleep(1)
    return f"RSS {before:.0f} -> {during:.0f} MB with 300 refused uploads, {rss_mb(proc.pid):.0f} MB after they closed"


def flood(proc, addr, tag):
    out = []
    for k, n in enumerate((1000, 2000, 4000, 8000, 10000)):
        # A new startsAt per flood: new episodes with short fingerprints (10,000 fit 1 MiB).
        starts = f"2026-11-22T10:{k:02d}:00Z"
        body = webhook([alert(f"{i:x}", starts_at=starts) for i in range(n)])
        small = {}

        def one():
            time.sleep(0.01)
            t = time.monotonic()
            request(addr, "POST", "/alert", webhook([alert(f"{tag}{n}-single")]))
            small["s"] = time.monotonic() - t

        th = threading.Thread(target=one)
        inside = server_seconds(addr)
        t = time.monotonic()
        th.start()
        status, _ = request(addr, "POST", "/alert", body)
        took = time.monotonic() - t
        th.join()
        inside = server_seconds(addr) - inside - 0  # both webhooks
        out.append(f"{n} alerts ({len(body) // 1024} KiB): {took * 1000:.0f} ms at the client "
                   f"(HTTP {status}), {inside * 1000:.0f} ms in the scaler for both; the one-alert "
                   f"webhook sent 10 ms later took {small['s'] * 1000:.0f} ms")
        time.sleep(1.1)  # past the cooldown, so each flood meets the same state
    return "\n           ".join(out)


def names(proc, addr, tag):
    before = rss_mb(proc.pid)
    for r in range(30):
        alerts = [alert(f"{tag}n{r}-{i}", f"{r}-{i}-" + "N" * 500) for i in range(1000)]
        request(addr, "POST", "/alert", webhook(alerts))
    _, events = request(addr, "GET", "/events")
    _, page = request(addr, "GET", "/")
    return (f"RSS {before:.0f} -> {rss_mb(proc.pid):.0f} MB; /events {len(events) / 1e6:.2f} MB, "
            f"status page {len(page) / 1e6:.2f} MB")


def soak(proc, addr, tag):
    before = rss_mb(proc.pid)
    results = []
    lock = threading.Lock()

    def send(i):
        status, body = request(addr, "POST", "/alert", webhook([alert(f"{tag}s{i % 500}")]))
        with lock:
            results.append((status, body))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(1000)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.monotonic() - t
    ok = sum(1 for s, _ in results if s == 200)
    ups = 0
    for s, b in results:
        if s == 200:
            d = json.loads(b)
            ups += sum(1 for x in d.get("decisions", [d]) if x.get("action") == "scale_up")
    # The alerts the cooldown held back act one per cooldown (1 s) while they still fire.
    time.sleep(12)
    _, events = request(addr, "GET", "/events")
    steps = [(e["from"], e["to"]) for e in json.loads(events)["events"] if e["action"] == "scale_up"]
    return (f"1000 webhooks in {took:.1f} s: {ok} answered 200 ({ups} scale-ups among the "
            f"answers); after 12 s {len(steps)} scale-ups {steps[:1]}..{steps[-1:]}, never past "
            f"max 10: {all(t <= 10 for _, t in steps)}; RSS {before:.0f} -> {rss_mb(proc.pid):.0f} MB; "
            f"/events {len(events) / 1e3:.0f} kB")


class SlowEngine(http.server.BaseHTTPRequestHandler):
    """A stand-in Docker Engine: one replicated service `web`, updates take 200 ms."""
    lock = threading.Lock()
    replicas, version, updates = 1, 1, 0

    def log_message(self, *args):
        pass

    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def service(self):
        return {"ID": "web-id", "Version": {"Index": SlowEngine.version},
                "Spec": {"Name": "web", "Labels": {},
                         "Mode": {"Replicated": {"Replicas": SlowEngine.replicas}}}}

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("/version"):
            return self.answer({"ApiVersion": "1.41", "Version": "20.10.0"})
        if path.endswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            time.sleep(3600)
            return None
        if path.endswith("/info"):
            return self.answer({"Swarm": {"NodeID": "n1", "ControlAvailable": True}})
        if "/nodes/" in path:
            return self.answer({"ID": "n1", "ManagerStatus": {"Leader": True, "Addr": "x"}})
        if path.endswith("/tasks"):
            running = {"DesiredState": "running", "Status": {"State": "running"}}
            return self.answer([running] * SlowEngine.replicas)
        if "/services/" in path:
            with SlowEngine.lock:
                return self.answer(self.service())
        return self.answer({"message": f"not here: {path}"}, 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        spec = json.loads(self.rfile.read(length) or b"{}")
        time.sleep(0.2)
        with SlowEngine.lock:
            version = int(self.path.split("version=")[-1].split("&")[0])
            if version != SlowEngine.version:
                return self.answer({"message": "update out of sequence"}, 500)
            SlowEngine.replicas = spec["Mode"]["Replicated"]["Replicas"]
            SlowEngine.version += 1
            SlowEngine.updates += 1
        return self.answer({"Warnings": []})


def slow(proc, addr, tag):
    result = soak(proc, addr, tag)
    return (f"{result}; the Engine received {SlowEngine.updates} updates, ends at "
            f"{SlowEngine.replicas} replicas")


SCENARIOS = [("uploads", uploads), ("flood", flood), ("names", names), ("soak", soak),
             ("slow", slow)]


def main():
    binaries = [os.path.abspath(b) for b in sys.argv[1:]]
    if not binaries:
        sys.exit(__doc__)
    # Each scenario on a fresh process of each binary, side by side.
    # SOAK_SCENARIOS=slow,soak runs only those.
    only = [x for x in os.environ.get("SOAK_SCENARIOS", "").split(",") if x]
    for name, scenario in SCENARIOS:
        if only and name not in only:
            continue
        print(f"== {name}")
        for binary in binaries:
            engine = None
            if scenario is slow:
                SlowEngine.replicas, SlowEngine.version, SlowEngine.updates = 1, 1, 0
                engine = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowEngine)
                engine.daemon_threads = True
                threading.Thread(target=engine.serve_forever, daemon=True).start()
            with tempfile.TemporaryDirectory() as work:
                proc, addr = start(binary, work, engine and engine.server_address[1])
                try:
                    result = (scenario(proc, addr) if scenario is uploads
                              else scenario(proc, addr, name[0]))
                    print(f"  {binary}: {result}", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                    if engine:
                        engine.shutdown()


if __name__ == "__main__":
    main()
