#!/usr/bin/env python3
"""httpd-hub.py: a loopback stand-in for the Hugging Face hub's file
endpoint, for the model-fetch tests (t1100).

  httpd-hub.py ROOT PORTFILE [--log FILE] [--cut FILE:BYTES] [--bad-sha FILE]
               [--token TOKEN] [--no-range] [--lfs-min BYTES] [--idle SECONDS]

Serves ROOT/ID/FILE at /ID/resolve/main/FILE the way the hub does:
 - an LFS file (at least --lfs-min bytes, default 1000) answers HEAD and
   GET with a 302 to /cdn/ID/FILE and headers X-Linked-Size,
   X-Linked-Etag and ETag (the SHA-256 in quotes); /cdn/ serves the bytes;
 - a small file answers 200 with Content-Length and an ETag that is not a
   SHA-256 (a git-blob-like sha1), as the hub does for non-LFS files;
 - Range: bytes=N- gets 206 with Content-Range (unless --no-range: 200),
   N at or past the end gets 416;
 - a missing file gets 404 with a small JSON body.
--cut FILE:BYTES sends the full Content-Length but only BYTES of FILE's body
the first time, then drops the connection (an interrupted download).
--bad-sha FILE announces a wrong SHA-256 for FILE. --token T answers 401
unless the request carries "Authorization: Bearer T". --log appends one line
per request: METHOD PATH RANGE AUTH(yes/no). --idle S exits after S seconds
without a request (a safety net for tests that die early). The chosen port (bound on
127.0.0.1, picked by the kernel) is written to PORTFILE once listening.
"""
import argparse
import hashlib
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("portfile")
ap.add_argument("--log")
ap.add_argument("--cut", action="append", default=[])
ap.add_argument("--bad-sha", action="append", default=[])
ap.add_argument("--token")
ap.add_argument("--no-range", action="store_true")
ap.add_argument("--lfs-min", type=int, default=1000)
ap.add_argument("--idle", type=float, default=0, help="exit after this many seconds without a request")
args = ap.parse_args()
cuts = {f: int(n) for f, n in (c.rsplit(":", 1) for c in args.cut)}
lock = threading.Lock()
last_request = time.monotonic()


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def log(self):
        if args.log:
            with lock, open(args.log, "a") as f:
                auth = "auth" if self.headers.get("Authorization") else "noauth"
                f.write(f"{self.command} {self.path} {self.headers.get('Range', '-')} {auth}\n")

    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def handle_any(self):
        global last_request
        last_request = time.monotonic()
        self.log()
        if args.token and self.headers.get("Authorization") != f"Bearer {args.token}":
            return self.send(401, b'{"error":"Invalid credentials"}')
        parts = self.path.split("/")
        cdn = len(parts) >= 3 and parts[1] == "cdn"
        if cdn:
            rel = "/".join(parts[2:])
        else:
            try:
                i = parts.index("resolve")
            except ValueError:
                return self.send(404, b'{"error":"Not Found"}')
            rel = "/".join(parts[1:i] + parts[i + 2:])
        path = os.path.join(args.root, rel)
        if not os.path.isfile(path):
            return self.send(404, b'{"error":"Entry not found"}')
        data = open(path, "rb").read()
        name = os.path.basename(path)
        if not cdn and len(data) >= args.lfs_min:
            sha = hashlib.sha256(data).hexdigest()
            if name in args.bad_sha:
                sha = hashlib.sha256(data + b"x").hexdigest()
            return self.send(302, b"", [("Location", "/cdn/" + rel), ("X-Linked-Size", str(len(data))),
                                        ("X-Linked-Etag", f'"{sha}"'), ("ETag", f'"{sha}"')])
        self.serve_bytes(name, data, cdn)

    def serve_bytes(self, name, data, cdn):
        etag = [] if cdn else [("ETag", '"%s"' % hashlib.sha1(data).hexdigest())]
        rng = self.headers.get("Range")
        start = 0
        if rng and rng.startswith("bytes=") and not args.no_range:
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return self.send(416, b"", [("Content-Range", f"bytes */{len(data)}")])
        body = data[start:]
        code = 206 if start else 200
        hdr = etag + ([("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")] if start else [])
        cut = None
        with lock:
            if self.command == "GET" and name in cuts:
                cut = cuts.pop(name)
        if cut is None:
            return self.send(code, body, hdr)
        self.send_response(code)
        for k, v in hdr:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)


srv = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
srv.daemon_threads = True
with open(args.portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(args.portfile + ".tmp", args.portfile)


def watchdog():
    # a test that dies before stopping its server must not leave it behind
    while time.monotonic() - last_request < args.idle:
        time.sleep(0.5)
    os._exit(0)


if args.idle > 0:
    threading.Thread(target=watchdog, daemon=True).start()
try:
    srv.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
