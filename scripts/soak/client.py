#!/usr/bin/env python3
"""The soak's load generator and ledger (run by scripts/soak.sh; stdlib only).

    client.py load   --gateway NAME=URL... --rate R --duration S --sessions N
                     --ledger FILE [--slow-burst-at S] [--faults FILE]
    client.py verify --ledger FILE
    client.py report --ledger FILE --faults FILE --resources FILE --out FILE

`load` sends a steady mix of reads (1 in 2) and writes over N sessions per
gateway, on raw HTTP/1.1 keep-alive connections, at R requests/s per gateway.
Every write sets a key of its own in its session (`?update={"w<n>":1}`
through the echo backend); a write answered 2xx is *acknowledged* and goes
into the ledger. A session has one request in flight at a time (a cookie
store session is in its cookie, which each write replaces), so every read
can check that the session holds every write acknowledged before it. At
`--slow-burst-at` seconds it opens a burst of slow-reading and half-open
connections and records that window in the faults file.

`verify` reads every session back through its gateway and counts the
acknowledged writes it no longer holds. `report` prints the summary table.
"""

import argparse
import asyncio
import json
import random
import sys
import time
import urllib.parse

# A request that takes longer than this has hung: the longest a healthy
# gateway may take is the upstream timeout plus the store timeout.
HANG_SECONDS = 15.0
# An error this close to a fault window still counts as during the fault
# (connections the fault broke are noticed on their next use).
GRACE_SECONDS = 2.0
CONNECTIONS_PER_GATEWAY = 32


class Session:
    """One client's session on one gateway: its cookie jar and its ledger."""

    def __init__(self, gateway, index):
        self.gateway = gateway
        self.index = index
        self.jar = {}  # cookie name -> value (sid, sid.1, ...)
        self.acked = []  # write keys answered 2xx, in order

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.jar.items())

    def take_set_cookies(self, lines):
        for line in lines:
            pair, _, attributes = line.partition(";")
            name, _, value = pair.strip().partition("=")
            expired = "max-age=0" in attributes.lower().replace(" ", "")
            if expired:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value


class Connection:
    """One raw HTTP/1.1 keep-alive connection; reconnects when it breaks."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def request(self, target, cookie):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        self.writer.write((head + "\r\n").encode())
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers = []
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        get = lambda n: [v for k, v in headers if k == n]
        if "chunked" in ",".join(get("transfer-encoding")).lower():
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)  # data and its CRLF
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            length = int((get("content-length") or ["0"])[0])
            body = await self.reader.readexactly(length)
        if "close" in ",".join(get("connection")).lower():
            await self.close()
        return status, get("set-cookie"), body


class Load:
    def __init__(self, args):
        self.args = args
        self.gateways = {}
        for spec in args.gateway:
            name, _, url = spec.partition("=")
            parsed = urllib.parse.urlsplit(url)
            self.gateways[name] = (parsed.hostname, parsed.port)
        self.sessions = {
            name: [Session(name, i) for i in range(args.sessions)] for name in self.gateways
        }
        self.idle = {name: asyncio.Queue() for name in self.gateways}
        self.events = []  # (gateway, kind, sent, done, status or error)
        self.inconsistent = 0
        self.write_serial = 0

    async def one(self, conn, session):
        """One request on `session`: a write when the session is new or 1 in 2."""
        write = not session.jar or random.random() < 0.5
        target = "/"
        if write:
            self.write_serial += 1
            key = f"w{self.write_serial}"
            target = "/?update=" + urllib.parse.quote(json.dumps({key: 1}, separators=(",", ":")))
        sent = time.time()
        try:
            status, set_cookies, body = await asyncio.wait_for(
                conn.request(target, session.cookie_header()), HANG_SECONDS
            )
        except asyncio.TimeoutError:
            await conn.close()
            self.events.append((session.gateway, "write" if write else "read", sent, time.time(), "hung"))
            return
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            await conn.close()
            self.events.append((session.gateway, "write" if write else "read", sent, time.time(), type(error).__name__))
            return
        done = time.time()
        self.events.append((session.gateway, "write" if write else "read", sent, done, status))
        if 200 <= status < 300:
            session.take_set_cookies(set_cookies)
            if write:
                session.acked.append(key)
            else:
                data = json.loads(body).get("session") or {}
                missing = [k for k in session.acked if k not in data]
                if missing:
                    self.inconsistent += 1
                    print(f"soak: {session.gateway} session {session.index} misses {missing[:3]} on read", file=sys.stderr)

    async def worker(self, name, tokens):
        conn = Connection(*self.gateways[name])
        while True:
            await tokens.get()
            session = await self.idle[name].get()
            try:
                await self.one(conn, session)
            finally:
                self.idle[name].put_nowait(session)

    async def pace(self, tokens, duration):
        """Hands out `rate` tokens a second, split over the gateways."""
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < duration:
            due = int(elapsed * self.args.rate)
            for _ in range(due - sent):
                for queue in tokens.values():
                    if queue.qsize() < 1000:  # never queue up a backlog
                        queue.put_nowait(None)
            sent = max(sent, due)
            await asyncio.sleep(0.005)

    async def slow_clients(self, at):
        """A burst of slow-reading and half-open clients on every gateway."""
        await asyncio.sleep(at)
        start = time.time()
        held = []
        for host, port in self.gateways.values():
            for i in range(100):
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    continue
                if i % 3 == 0:  # slow reader: asks for 8 MB and never reads
                    writer.write(f"GET /download?bytes=8000000 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                elif i % 3 == 1:  # half-open: connects, sends part of a head, stops
                    writer.write(b"GET / HTTP/1.1\r\nHost: ")
                # else: connects and sends nothing at all
                held.append(writer)
        await asyncio.sleep(min(20.0, self.args.duration * 0.15))
        for writer in held:
            writer.transport.abort()
        end = time.time()
        if self.args.faults:
            with open(self.args.faults, "a") as f:
                f.write(f"slow-clients {start:.3f} {end:.3f}\n")

    async def run(self):
        for name, sessions in self.sessions.items():
            for session in sessions:
                self.idle[name].put_nowait(session)
        tokens = {name: asyncio.Queue() for name in self.gateways}
        tasks = [
            asyncio.create_task(self.worker(name, tokens[name]))
            for name in self.gateways
            for _ in range(CONNECTIONS_PER_GATEWAY)
        ]
        if self.args.slow_burst_at is not None:
            tasks.append(asyncio.create_task(self.slow_clients(self.args.slow_burst_at)))
        await self.pace(tokens, self.args.duration)
        # Let the requests in flight finish (each is bounded by HANG_SECONDS).
        for name in self.gateways:
            while not tokens[name].empty():
                tokens[name].get_nowait()
        deadline = time.monotonic() + HANG_SECONDS + 1
        while time.monotonic() < deadline and any(q.qsize() < len(self.sessions[n]) for n, q in self.idle.items()):
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def save(self, path):
        with open(path, "w") as f:
            json.dump(
                {
                    "gateways": {n: list(a) for n, a in self.gateways.items()},
                    "sessions": {
                        n: [{"jar": s.jar, "acked": s.acked} for s in ss] for n, ss in self.sessions.items()
                    },
                    "events": self.events,
                    "inconsistent_reads": self.inconsistent,
                },
                f,
            )


async def verify(path):
    """Reads every session back and counts acknowledged writes it lost."""
    with open(path) as f:
        ledger = json.load(f)
    lost, checked = {}, {}
    for name, sessions in ledger["sessions"].items():
        conn = Connection(*ledger["gateways"][name])
        lost[name] = checked[name] = 0
        for entry in sessions:
            if not entry["acked"]:
                continue
            cookie = "; ".join(f"{k}={v}" for k, v in entry["jar"].items())
            for attempt in range(5):
                try:
                    status, _, body = await asyncio.wait_for(conn.request("/", cookie), HANG_SECONDS)
                    if status == 200:
                        break
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    await conn.close()
                await asyncio.sleep(0.5)
            else:
                print(f"soak: {name}: cannot read a session back", file=sys.stderr)
                lost[name] += len(entry["acked"])
                continue
            data = json.loads(body).get("session") or {}
            checked[name] += len(entry["acked"])
            lost[name] += sum(1 for k in entry["acked"] if k not in data)
        await conn.close()
    ledger["verify"] = {"lost": lost, "checked": checked}
    with open(path, "w") as f:
        json.dump(ledger, f)


def read_faults(path):
    windows = []
    try:
        with open(path) as f:
            for line in f:
                name, start, end = line.split()
                windows.append((name, float(start), float(end)))
    except FileNotFoundError:
        pass
    return windows


def report(args):
    with open(args.ledger) as f:
        ledger = json.load(f)
    windows = read_faults(args.faults)

    def during(sent, done):
        return [n for n, s, e in windows if sent <= e + GRACE_SECONDS and done >= s - GRACE_SECONDS]

    rows = []
    by_fault = {}  # (fault, gateway) -> failed requests that overlapped it
    for name in ledger["gateways"]:
        events = [e for e in ledger["events"] if e[0] == name]
        bad_in = bad_out = hung = 0
        outside = {}
        for _, kind, sent, done, status in events:
            failed = status == "hung" or not isinstance(status, int) or status >= 500
            hung += status == "hung"
            if not failed:
                continue
            if during(sent, done):
                bad_in += 1
                # Counted once, against the nearest window it overlaps.
                fault = min(
                    (w for w in windows if w[0] in during(sent, done)),
                    key=lambda w: max(0.0, w[1] - done, sent - w[2]),
                )[0]
                by_fault[(fault, name)] = by_fault.get((fault, name), 0) + 1
            else:
                bad_out += 1
                outside[str(status)] = outside.get(str(status), 0) + 1
        ok = sum(1 for e in events if isinstance(e[4], int) and 200 <= e[4] < 300)
        other = sum(1 for e in events if isinstance(e[4], int) and 300 <= e[4] < 500)
        acked = sum(len(s["acked"]) for s in ledger["sessions"][name])
        rows.append((name, len(events), ok, other, bad_in, bad_out, outside, hung, acked,
                     ledger["verify"]["checked"][name], ledger["verify"]["lost"][name]))

    resources = {}
    with open(args.resources) as f:
        for line in f:
            phase, name, t, rss, fds = line.split()
            resources.setdefault(name, []).append((phase, float(t), int(rss), int(fds)))

    out = []
    p = out.append
    kinds = {}
    for n, s, e in windows:
        kinds.setdefault(n, []).append(e - s)
    names = list(ledger["gateways"])
    p("| fault | injected | total seconds | " + " | ".join(f"5xx / errors: {g}" for g in names) + " |")
    p("|---|---:|---:|" + "---:|" * len(names))
    for n, spans in kinds.items():
        counts = " | ".join(f"{by_fault.get((n, g), 0):,}" for g in names)
        p(f"| {n} | {len(spans)} | {sum(spans):.1f} | {counts} |")
    p("")
    p("| store | requests | 2xx | 3xx/4xx | 5xx / errors during faults | 5xx / errors outside faults | hung (> 15 s) | acknowledged writes | read back | **lost** | RSS MiB warm / peak / end of load / settled | fds before / settled |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    verdict = ledger.get("inconsistent_reads", 0) == 0
    failures = [] if verdict else ["reads missed acknowledged writes"]
    for (name, total, ok, other, bad_in, bad_out, outside, hung, acked, checked, lost) in rows:
        samples = resources.get(name, [])
        idle = [s for s in samples if s[0] == "idle"][0]
        settled = [s for s in samples if s[0] == "settled"][-1]
        load = [s for s in samples if s[0] == "load"]
        # Warm: the first sample after the warm-up (the first 10 % of the
        # run); end: the last one under load. RSS is flat when the end is
        # within 20 % (or 10 MiB) of the warm figure; open files are back
        # when, once idle connections have closed, they are what they were
        # before the first request (two more allowed: Redis reconnects).
        t0, t1 = load[0][1], load[-1][1]
        warm = [s for s in load if s[1] >= t0 + (t1 - t0) * 0.1] or load
        start, end = warm[0], warm[-1]
        peak = max(s[2] for s in samples)
        mib = lambda kb: f"{kb / 1024:.1f}"
        flat = end[2] <= max(start[2] * 1.2, start[2] + 10 * 1024) and settled[3] <= idle[3] + 2
        verdict = verdict and bad_out == 0 and hung == 0 and lost == 0 and flat
        for failed, what in [
            (lost, "acknowledged writes lost"),
            (bad_out, "errors outside faults"),
            (hung, "requests hung"),
            (not flat, "RSS or open files not flat"),
        ]:
            if failed:
                failures.append(f"{name}: {what}")
        extra = f" ({', '.join(f'{k}: {v}' for k, v in outside.items())})" if outside else ""
        p(f"| {name} | {total:,} | {ok:,} | {other:,} | {bad_in:,} | {bad_out:,}{extra} | {hung} | {acked:,} | {checked:,} | **{lost}** "
          f"| {mib(start[2])} / {mib(peak)} / {mib(end[2])} / {mib(settled[2])} | {idle[3]} / {settled[3]} |")
    p("")
    p(f"Reads that missed an earlier acknowledged write: {ledger.get('inconsistent_reads', 0)}.")
    if verdict:
        p("Verdict: PASS (0 lost, 0 errors outside faults, none hung, RSS and fds flat).")
    else:
        p(f"Verdict: FAIL ({'; '.join(failures)}).")
    text = "\n".join(out) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0 if verdict else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load")
    load.add_argument("--gateway", action="append", required=True, help="NAME=http://host:port")
    load.add_argument("--rate", type=float, required=True, help="requests/s per gateway")
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--sessions", type=int, default=2000)
    load.add_argument("--ledger", required=True)
    load.add_argument("--faults")
    load.add_argument("--slow-burst-at", type=float)
    check = sub.add_parser("verify")
    check.add_argument("--ledger", required=True)
    rep = sub.add_parser("report")
    for name in ("--ledger", "--faults", "--resources", "--out"):
        rep.add_argument(name, required=True)
    args = parser.parse_args()
    if args.command == "load":
        run = Load(args)
        asyncio.run(run.run())
        run.save(args.ledger)
        print(f"soak: {len(run.events)} requests sent", file=sys.stderr)
    elif args.command == "verify":
        asyncio.run(verify(args.ledger))
    else:
        sys.exit(report(args))


if __name__ == "__main__":
    main()
