#!/usr/bin/env python3
"""fake-openai.py: a chat-completions and completions server on loopback for the
explain-gpt4 tests, with a fake explainer, simulator and detector that read
the prompts, and fault injection.

  fake-openai.py --port-file F --log L [--port P] [--faults LIST] [--key K]
                 [--legacy-logprobs] [--fail-token T] [--slow S] [--delay S] [--always KIND] [--messy] [--no-logprobs]

The explainer names the token that most often has a non-zero activation in
the last user message: 'the word "w13".' The simulator answers 10 on lines
whose token is that word and 0 elsewhere; with logprobs requested it also
returns a distribution over the number (10: 0.8/9: 0.15/0: 0.05, 0: 0.9/1: 0.1).
--legacy-logprobs sends them completions-style ({"tokens", "top_logprobs"}),
as some servers do. The detector names the examples whose text holds the word;
the fuzz judge, the items whose every highlighted <<token>> is the word.
/v1/completions takes the prompt text explain-gpt4 --endpoint completions
writes (the last "User:" part is the question) and answers choices[0].text,
with completions-style logprobs when "logprobs" is a number (at most 5, as
OpenAI's completions endpoint allows: more gets a 400); /v1/chat/completions
takes messages. A body without what its path needs gets a 400.

Faults (--faults, comma-separated) are given out in order, one to each
request body seen for the first time; a body seen again is answered
properly. Kinds: 429 (with Retry-After: 1), 500, slow (answer after --slow
seconds), nonjson, short (Content-Length larger than the body sent, then
close), badformat (a reply in the wrong format), 401. Explain requests whose
word is --fail-token always get a 500. With --key, a request without
"Authorization: Bearer KEY" gets a 401 whose message quotes the key given.
--always KIND injects that fault into every request. --delay S holds every
reply S seconds. --dump DIR saves every request body as DIR/N.json (for bench/explain.sh).
--port 0 (the default) takes a free port; F gets the port.
Every request is logged to --log as one JSON line (no key in it)."""
import argparse, json, math, re, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port-file", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--faults", default="")
ap.add_argument("--key", default=None)
ap.add_argument("--fail-token", default=None)
ap.add_argument("--slow", type=float, default=3.0)
ap.add_argument("--messy", action="store_true")
ap.add_argument("--delay", type=float, default=0.0)
ap.add_argument("--always", default=None)
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--dump", default=None)
ap.add_argument("--no-logprobs", action="store_true")
ap.add_argument("--legacy-logprobs", action="store_true")
args = ap.parse_args()

lock = threading.Lock()
faults = [f for f in args.faults.split(",") if f]
seen = {}
count = [0]


def last_user(msgs):
    for m in reversed(msgs):
        if m.get("role") == "user":
            return m.get("content", "")
    return ""


def kind_of(text):
    if "unknown" in text and "<start>" in text:
        return "simulate"
    if re.search(r"^\d+: ", text, re.M):
        return "fuzz" if "<<" in text else "detect"
    return "explain"


def explain_word(text):
    counts = {}
    for line in text.split("\n"):
        if "\t" not in line:
            continue
        tok, val = line.rsplit("\t", 1)
        if val.strip().isdigit() and int(val) > 0:
            counts[tok.strip()] = counts.get(tok.strip(), 0) + 1
    return max(sorted(counts), key=lambda k: counts[k]) if counts else "nothing"


def explanation_word(text):
    m = re.search(r"Feature explanation: (.*)", text)
    e = m.group(1).strip().rstrip(".") if m else ""
    q = re.search(r'"([^"]*)"', e)
    return (q.group(1) if q else e.split()[-1] if e else "").strip()


def simulate(text, word):
    blocks, cur = [], None
    for line in text.split("\n"):
        if line == "<start>":
            cur = []
        elif line == "<end>":
            blocks.append(cur)
            cur = None
        elif cur is not None and line.endswith("\tunknown"):
            tok = line[: -len("\tunknown")]
            cur.append((tok, 10 if tok.strip() == word else 0))
    if args.messy:
        # prose, a code fence, blocks in reverse order, one line dropped
        blocks = blocks[::-1]
        if blocks and len(blocks[0]) > 2:
            blocks[0] = blocks[0][:1] + blocks[0][2:]
        out = "Sure! Here are my predictions:\n```\n"
    else:
        out = ""
    for b in blocks:
        out += "<start>\n" + "".join("%s\t%d\n" % (t, v) for t, v in b) + "<end>\n"
    if args.messy:
        out += "```\nLet me know if you need anything else."
    return out


def logprobs_for(content):
    """Chat-style logprobs: the content cut into tokens, numbers alone."""
    pieces = re.findall(r"\d+|[^\d]+", content)
    lp = []
    for p in pieces:
        if p.isdigit() and int(p) in (0, 10) and not args.no_logprobs:
            dist = {"10": 0.8, "9": 0.15, "0": 0.05} if p == "10" else {"0": 0.9, "1": 0.1}
            top = [{"token": k, "logprob": math.log(v), "bytes": list(k.encode())} for k, v in dist.items()]
            lp.append({"token": p, "logprob": math.log(dist[p]), "bytes": list(p.encode()), "top_logprobs": top})
        else:
            lp.append({"token": p, "logprob": 0.0, "bytes": list(p.encode()), "top_logprobs": []})
    return lp


def prompt_user(prompt):
    """The last user part of a completions prompt."""
    part = re.split(r"(?:^|\n)User:\n", prompt)[-1]
    end = part.rfind("\n\nAssistant:\n")
    return part[:end] if end >= 0 else part


def legacy(lp):
    return {"tokens": [e["token"] for e in lp], "token_logprobs": [e["logprob"] for e in lp],
            "top_logprobs": [{a["token"]: a["logprob"] for a in e["top_logprobs"]} for e in lp]}


def answer(req):
    completions = "prompt" in req
    msgs = req.get("messages", [])
    text = prompt_user(req.get("prompt", "")) if completions else last_user(msgs)
    kind = kind_of(text)
    if kind == "explain":
        word = explain_word(text)
        content = 'the word "%s".' % word
    elif kind == "simulate":
        content = simulate(text, explanation_word(text))
    elif kind == "detect":
        word = explanation_word(text)
        named = [m.group(1) for m in re.finditer(r"^(\d+): (.*)$", text, re.M)
                 if re.search(r"(^| )%s( |$)" % re.escape(word), m.group(2))]
        content = ", ".join(named) if named else "none"
    else:
        # fuzz: the items whose every highlighted token is the word
        word = explanation_word(text)
        named = []
        for m in re.finditer(r"^(\d+): (.*)$", text, re.M):
            marked = " ".join(re.findall(r"<<(.*?)>>", m.group(2))).split()
            if marked and all(t == word for t in marked):
                named.append(m.group(1))
        content = ", ".join(named) if named else "none"
    if completions:
        choice = {"index": 0, "text": content, "finish_reason": "stop"}
        if req.get("logprobs"):
            lp = logprobs_for(content)
            choice["logprobs"] = legacy(lp)
            off, offs = 0, []
            for e in lp:
                offs.append(off)
                off += len(e["token"])
            choice["logprobs"]["text_offset"] = offs
        ptok = len(req.get("prompt", "")) // 4
        return kind, {"id": "x", "object": "text_completion", "model": req.get("model"), "choices": [choice],
                      "usage": {"prompt_tokens": ptok, "completion_tokens": len(content) // 4 + 1}}
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if req.get("logprobs"):
        lp = logprobs_for(content)
        choice["logprobs"] = {"content": lp}
        if args.legacy_logprobs:
            choice["logprobs"] = legacy(lp)
    ptok = sum(len(m.get("content", "")) for m in msgs) // 4
    return kind, {"id": "x", "object": "chat.completion", "model": req.get("model"), "choices": [choice],
                  "usage": {"prompt_tokens": ptok, "completion_tokens": len(content) // 4 + 1}}


def bad_format(kind):
    return {"explain": "", "simulate": "I think the activations are mostly zero.",
            "detect": "I cannot tell.", "fuzz": "Hard to say."}[kind]


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, extra=None, ctype="application/json", cut=False):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) + (100 if cut else 0)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if cut:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)
        self.wfile.flush()
        if cut:
            self.close_connection = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            req = json.loads(raw)
        except ValueError:
            return self.send(400, json.dumps({"error": {"message": "bad JSON"}}))
        if not isinstance(req, dict):
            return self.send(400, json.dumps({"error": {"message": "body is not a JSON object"}}))
        kind, good = answer(req)
        user = prompt_user(req.get("prompt", "")) if "prompt" in req else last_user(req.get("messages", []))
        word = explain_word(user) if kind == "explain" else None
        auth = self.headers.get("Authorization", "")
        with lock:
            count[0] += 1
            seq = count[0]
            fault = args.always
            if args.fail_token and word == args.fail_token:
                fault = "500"
            elif raw not in seen:
                seen[raw] = 1
                if faults and not fault:
                    fault = faults.pop(0)
        if args.key is not None and auth != "Bearer " + args.key:
            fault = "401"
        with lock, open(args.log, "a") as f:
            f.write(json.dumps({"n": seq, "kind": kind, "fault": fault, "t": time.time(),
                                "path": self.path, "logprobs": bool(req.get("logprobs")),
                                "body_sha": hash(raw) & 0xffffffff}) + "\n")
        if args.dump:
            with open("%s/%d.json" % (args.dump, seq), "wb") as f:
                f.write(raw)
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self.send(404, json.dumps({"error": {"message": "no such path " + self.path}}))
        need = "prompt" if self.path == "/v1/completions" else "messages"
        if need not in req:
            return self.send(400, json.dumps({"error": {"message": "'%s' is required at %s" % (need, self.path)}}))
        lpn = req.get("logprobs")
        if need == "prompt" and lpn is not None and (isinstance(lpn, bool) or not isinstance(lpn, int) or lpn > 5):
            return self.send(400, json.dumps({"error": {"message": "logprobs must be an integer at most 5"}}))
        try:
            self.fault(fault, kind, good, auth)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def fault(self, fault, kind, good, auth):
        if fault == "401":
            given = auth[len("Bearer "):] if auth.startswith("Bearer ") else auth
            return self.send(401, json.dumps({"error": {"message": "Incorrect API key provided: %s." % given}}))
        if fault == "429":
            return self.send(429, json.dumps({"error": {"message": "Rate limit reached"}}), {"Retry-After": "1"})
        if fault == "500":
            return self.send(500, json.dumps({"error": {"message": "The server had an error"}}))
        if fault == "nonjson":
            return self.send(200, "<html><body>Bad gateway</body></html>", ctype="text/html")
        if fault == "short":
            return self.send(200, json.dumps(good), cut=True)
        if fault == "slow":
            time.sleep(args.slow)
        if args.delay:
            time.sleep(args.delay)
        if fault == "badformat":
            if "text" in good["choices"][0]:
                good["choices"][0]["text"] = bad_format(kind)
            else:
                good["choices"][0]["message"]["content"] = bad_format(kind)
            good["choices"][0].pop("logprobs", None)
        self.send(200, json.dumps(good))


ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer.request_queue_size = 128
srv = ThreadingHTTPServer(("127.0.0.1", args.port), H)
srv.daemon_threads = True
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(args.port_file + ".tmp", args.port_file)
srv.serve_forever()
