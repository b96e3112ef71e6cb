#!/usr/bin/env python3
"""Bounded loopback load test of `edgellm serve --parallel N`.

For each slot count N (default 1 2 4 8) it starts the server on 127.0.0.1 with N slots, warms it up with one
request, then runs N concurrent clients, each sending ROUNDS /v1/completions requests (non-streaming; --stream: server-sent events) one after
another (greedy, MAX_TOKENS tokens each), and reports aggregate completion tokens/s over the wall time, the
p50/p95 request latency, and the mean decode batch the server's /metrics saw. Every request's prompt starts with its
own number, so no request reuses another client's cached prompt (--shared-prompts: the old rotation). From the
server's counters over the measured window: seconds in forward calls, host seconds outside them (admission,
sampling, text), seconds idle with no request, seconds prompt-only steps waited for returning clients, all forward
calls, their mean time, and the prompt tokens they ran (--step-log DIR: the server's per-step CSV, DIR/steps-N.csv).
Everything is bounded: at most 8 x ROUNDS requests per N, a per-request timeout and a per-N wall limit; the server
is stopped after each N. With --repeat K (2..10) every N's server stays up and the slot counts are measured K times,
alternated (forward, then reversed), and the ratio to the first slot count is taken within each repeat and reported
as the median over the repeats: the machine's speed drifts between windows a minute apart, and a ratio of two
windows measured far apart measures the drift as much as the server. (With --repeat, a server's "idle s" counts its wait while the
other servers were measured: the scheduler books an idle stretch when it ends.)

usage: perf/loadtest/loadtest.py -m MODEL [--slots 1,2,4,8] [-t 2] [--rounds 2] [--max-tokens 32]
                                 [--edgellm "dotnet src/EdgeLlm.Cli/bin/Release/net10.0/edgellm.dll"]
                                 [--stream] [--shared-prompts] [--repeat K] [--step-log DIR]
                                 [--llama-server BIN]

--llama-server BIN runs the same clients and requests against llama.cpp's `llama-server` (-np N, -c N x CTX, since it
splits its context among the slots; -t THREADS) instead of edgellm, for a reference curve on the same machine; its
scheduler counters (fwd s .. prompt) are not read (nan).
"""
import argparse, http.client, json, os, shlex, signal, socket, statistics, subprocess, sys, threading, time

PROMPTS = ["Once upon a time", "The quick brown fox", "In the beginning", "A long way from home",
           "The weather today", "Here is a story about", "My favourite food is", "The old man said"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def completion_tokens(data):
    """The usage of a JSON answer, or of a server-sent event stream's usage chunk (the last before [DONE])."""
    if not data.startswith(b"data: "):
        return json.loads(data)["usage"]["completion_tokens"]
    events = [e[len(b"data: "):] for e in data.split(b"\n\n") if e.startswith(b"data: ")]
    if not events or events[-1] != b"[DONE]":
        raise RuntimeError("the stream did not end with [DONE]")
    return json.loads(events[-2])["usage"]["completion_tokens"]


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def prompt(args, i, k, rep=0):
    """Client i's k-th prompt. Each request starts with its own number, so that no request finds another client's
    prompt in a slot's cache: with the 8 prompts rotated among the clients alone (--shared-prompts, how the test
    ran before), client i's next prompt was client i+1's last one, so with several slots most prompts after the
    first round came from the cache (one token prefilled) while one slot prefilled every prompt in full: an
    advantage of the many-slot runs that real, independent users would not give them."""
    text = PROMPTS[(i + k) % len(PROMPTS)]
    return text if args.shared_prompts else f"{(rep * 8 + i) * args.rounds + k + 1}. {text}"


SPLIT = ["edgellm_step_forward_seconds_total", "edgellm_step_host_seconds_total", "edgellm_scheduler_idle_seconds_total",
         "edgellm_steps_total", "edgellm_step_prompt_tokens_total", "edgellm_prompt_gather_seconds_total"]


def start(args, n):
    """Starts `edgellm serve --parallel n` (or llama.cpp's llama-server -np n) on a free loopback port, waits for
    /health and warms it up with one request (JIT / page-in). Returns (server process, port)."""
    port = free_port()
    if args.llama_server:
        cmd = [args.llama_server, "-m", args.model, "--host", "127.0.0.1", "--port", str(port), "-np", str(n),
               "-t", str(args.threads), "-c", str(args.ctx * n)]
    else:
        cmd = shlex.split(args.edgellm) + ["serve", "-m", args.model, "--host", "127.0.0.1", "--port", str(port),
                                           "--parallel", str(n), "--queue", "64", "-t", str(args.threads),
                                           "-c", str(args.ctx), "--device", "cpu"]
    env = dict(os.environ)
    if args.step_log:
        env["EDGELLM_STEP_LOG"] = os.path.join(args.step_log, f"steps-{n}.csv")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if request(port, "GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the server with {n} slot{'s' if n > 1 else ''} did not start ({' '.join(cmd)}; exit code {server.poll()})")
            time.sleep(0.5)
        status, _ = request(port, "POST", "/v1/completions", body(args, "warm up"))
        assert status == 200, status
        return server, port
    except BaseException:
        stop(server)
        raise


def stop(server):
    """Stops a server's process group (nothing to do when it has already exited)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    server.wait()


def body(args, p):
    b = {"prompt": p, "max_tokens": args.max_tokens, "temperature": 0}
    if args.stream:
        b.update({"stream": True, "stream_options": {"include_usage": True}})
    return b


def measure(args, n, port, rep):
    """One measured window: n concurrent clients, ROUNDS requests each, against the warm server on port."""
    # Only this window's steps count (not the warm-up's, nor an earlier window's).
    _, m0 = request(port, "GET", "/metrics")
    m0 = m0.decode()
    steps0, step_tokens0 = metric(m0, "edgellm_decode_steps_total"), metric(m0, "edgellm_decode_step_tokens_total")
    split0 = [metric(m0, k) for k in SPLIT]
    latencies, tokens, errors = [], [], []
    lock = threading.Lock()

    def client(i):
        for k in range(args.rounds):
            t0 = time.perf_counter()
            try:
                status, data = request(port, "POST", "/v1/completions", body(args, prompt(args, i, k, rep)))
                if status != 200:
                    raise RuntimeError(f"status {status}: {data[:200]!r}")
                used = completion_tokens(data)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(str(e))
                return
            with lock:
                latencies.append(time.perf_counter() - t0)
                tokens.append(used)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.wall_limit)
    wall = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        errors.append(f"clients still running after {args.wall_limit} s")
    _, m = request(port, "GET", "/metrics")
    m = m.decode()
    steps = metric(m, "edgellm_decode_steps_total") - steps0
    step_tokens = metric(m, "edgellm_decode_step_tokens_total") - step_tokens0
    split = [metric(m, k) - k0 for k, k0 in zip(SPLIT, split0)]
    return {
        "slots": n, "requests": len(latencies), "tokens": sum(tokens), "wall_s": wall,
        "tok_s": sum(tokens) / wall if wall > 0 else 0.0,
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p95_s": sorted(latencies)[max(0, int(round(0.95 * len(latencies))) - 1)] if latencies else float("nan"),
        "mean_batch": step_tokens / steps if steps else float("nan"),
        # Where the server's scheduler spent the measured window (NaN for a binary without these counters).
        "forward_s": split[0], "host_s": split[1], "idle_s": split[2], "all_steps": split[3], "prompt_tokens": split[4], "gather_s": split[5],
        "errors": errors,
    }


def row(r, base, rep=None):
    print(f"{r['slots']:>5} {r['requests']:>8} {r['tokens']:>6} {r['wall_s']:>7.1f} {r['tok_s']:>7.2f} "
          f"{r['tok_s'] / base:>5.2f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} {r['mean_batch']:>5.2f}"
          f" {r['forward_s']:>6.2f} {r['host_s']:>6.3f} {r['idle_s']:>6.2f} {r['gather_s']:>6.2f} {r['all_steps']:>5.0f}"
          f" {1000 * r['forward_s'] / r['all_steps'] if r['all_steps'] else float('nan'):>7.2f} {r['prompt_tokens']:>6.0f}"
          + ("" if rep is None else f"  (repeat {rep})"), flush=True)
    for e in r["errors"]:
        print(f"      error: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--slots", default="1,2,4,8")
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("-c", "--ctx", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--wall-limit", type=float, default=600)
    p.add_argument("--edgellm", default="dotnet src/EdgeLlm.Cli/bin/Release/net10.0/edgellm.dll")
    p.add_argument("--stream", action="store_true", help="streaming requests (server-sent events, one per token)")
    p.add_argument("--shared-prompts", action="store_true",
                   help="rotate the 8 prompts among the clients as before (later rounds reuse other clients' cached prompts)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure the slot counts K times, alternated, all servers kept up; report the median ratio to the first")
    p.add_argument("--step-log", metavar="DIR", help="have the server write its per-step log (EDGELLM_STEP_LOG) to DIR/steps-N.csv")
    p.add_argument("--llama-server", metavar="BIN", help="measure llama.cpp's llama-server at BIN instead of edgellm (a reference)")
    args = p.parse_args()
    if args.llama_server and args.step_log:
        sys.exit("loadtest: --step-log is edgellm's per-step log; it does not apply to --llama-server")
    slots = [int(s) for s in args.slots.split(",")]
    if any(s < 1 or s > 8 for s in slots) or not 1 <= args.rounds <= 8 or not 1 <= args.max_tokens <= 256 \
            or not 1 <= args.repeat <= 10:
        sys.exit("loadtest: slots must be in 1..8, rounds in 1..8, max-tokens in 1..256, repeat in 1..10 (the test is bounded)")
    print(f"{'llama-server ' + args.llama_server if args.llama_server else 'edgellm'}: model {args.model}, {args.threads} threads, {args.rounds} {'streaming ' if args.stream else ''}requests per client, {args.max_tokens} tokens each; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'slots':>5} {'requests':>8} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'x1':>5} {'p50 s':>7} {'p95 s':>7} {'batch':>5}"
          f" {'fwd s':>6} {'host s':>6} {'idle s':>6} {'gath s':>6} {'steps':>5} {'ms/step':>7} {'prompt':>6}")
    if args.repeat == 1:
        # One server at a time: start, measure, stop (the peak memory of one server).
        base = None
        for n in slots:
            server, port = start(args, n)
            try:
                r = measure(args, n, port, 0)
            finally:
                stop(server)
            base = base or r["tok_s"]
            row(r, base)
    else:
        # All servers up at once (idle ones take no CPU), the windows alternated N1 N2 .. N1 N2 .., so that every
        # slot count sees the same drift of the machine's speed; the ratio to the first slot count is taken within a
        # repeat, then the median over the repeats.
        servers = {}
        try:
            for n in slots:
                servers[n] = start(args, n)
            ratios = {n: [] for n in slots}
            speeds = {n: [] for n in slots}
            for rep in range(args.repeat):
                # Every other repeat runs the slot counts in reverse (1 4, 4 1, ...): a drift within a repeat then
                # favours the first slot count as often as the last.
                order = slots if rep % 2 == 0 else slots[::-1]
                got = {n: measure(args, n, servers[n][1], rep) for n in order}
                base = got[slots[0]]["tok_s"]
                for n in order:
                    ratios[n].append(got[n]["tok_s"] / base if base else float("nan"))
                    speeds[n].append(got[n]["tok_s"])
                    row(got[n], base, rep + 1)
            print(f"medians over {args.repeat} repeats (ratio to {slots[0]} slot{'s' if slots[0] > 1 else ''} within each repeat):")
            for n in slots:
                print(f"{n:>5} slots: {statistics.median(speeds[n]):.2f} tok/s, x{statistics.median(ratios[n]):.2f}"
                      f" (ratios {min(ratios[n]):.2f}-{max(ratios[n]):.2f})", flush=True)
        finally:
            for server, _ in servers.values():
                stop(server)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError) as e:
        sys.exit(f"loadtest: {e}")
