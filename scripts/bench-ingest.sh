#!/usr/bin/env bash
# Ingestion benchmark (not a test): DFW log lines into the controller with status writes on,
# against the local control plane and the NSX simulator, at fleet size.
#
# POLICIES applications of 10 explicit rules each (plus the two catch-alls: 12 NSX rule ids per
# application) send unmatched lines spread over 100,000 distinct flows (100,000 / POLICIES per
# application) and one line in ten on an explicit rule. Per controller, in this order:
#   fill      every one of the 100,000 distinct flows once, through /ingest/lines
#   webhook   the Log Insight alert webhook (/ingest/loginsight), SENDERS senders, LINES_PER_BATCH
#             messages per alert, one application per alert, round robin
#   lines     the same through /ingest/lines
#   syslog    TCP syslog (RFC 3164 header, newline framing), SENDERS connections; timed until a
#             later /ingest/lines batch is acknowledged (the recorder writes in order, so every
#             syslog line is in status by then)
# An HTTP figure counts only lines answered 200, i.e. in status.monitor. Each timed phase runs
# REPS times; a figure is the median with the min-max range (the noise). The same phases then
# run against a second controller started with MICROSEG_INGEST_BASELINE=1 (the attribution index
# rebuilt per batch, as before #15), on the same cluster and statuses. At the end: status totals
# are checked against what was acknowledged, and per controller the peak RSS; the largest status.
#
#   bash scripts/bench-ingest.sh [POLICIES] [SECONDS] [SENDERS] [LINES_PER_BATCH]   (1000 10 8 10000)
#   env: REPS (2), BASELINE (1; 0 skips the baseline controller), MICROSEG_BIN (a prebuilt
#        microseg to measure instead of building target/release/microseg), MICROSEG_BENCH_WRAP
#        (prefixes the controller's command, e.g. "heaptrack -o /tmp/ingest" with a build without
#        mimalloc; the RSS figures are then the wrapper's)
#
# LINES_PER_BATCH is what one request of a log relay carries at its documented defaults: Vector's
# `http` sink flushes a batch at 1,049,000 bytes or after 1 s (batch.max_size / timeout_secs,
# https://vector.dev/docs/reference/sinks/http/), about 10,000 of these lines of about 100 bytes;
# Fluent Bit's `http` output posts a chunk per request, and a chunk is about 2 MB, twice that
# (https://docs.fluentbit.io/manual/administration/buffering-and-storage, "Chunks"). Log Insight
# documents the webhook's payload, not how many messages an alert carries; the webhook phase uses
# the same count. Each batch holds one application's lines; a relay's batch mixes applications,
# which spreads the same lines over more status writes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
N="${1:-1000}"; SECS="${2:-10}"; SENDERS="${3:-8}"; BATCH="${4:-10000}"
REPS="${REPS:-2}"; BASELINE="${BASELINE:-1}"; DISTINCT=100000
ROOT="$PWD"; WORK="$ROOT/.tmp/bench-ingest"; rm -rf "$WORK"; mkdir -p "$WORK/nsx"
PIDS=()
cleanup() { set +e; for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done; wait 2>/dev/null; bash tests/control-plane/run.sh stop "$WORK/kubeconfig" >/dev/null 2>&1; }
trap cleanup EXIT; trap 'exit 143' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ -n "${MICROSEG_BIN:-}" ]; then M="$MICROSEG_BIN"; else
  cargo build --quiet --release --bin microseg; M="$ROOT/target/release/microseg"; fi
bash tests/control-plane/run.sh build
CONTROL_PLANE_WATCH_PID=$$ bash tests/control-plane/run.sh start "$WORK/kubeconfig" >/dev/null
export KUBECONFIG="$WORK/kubeconfig"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/segmentationpolicies.microseg.io crd/enforcementwindows.microseg.io >/dev/null
NSX_PORT=$(free_port)
python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps([{"name": f"app-{i:04}-vm", "ips": [f"10.{100 + i // 250}.{i % 250}.1"], "tags": [{"scope": "app", "tag": f"app-{i:04}"}]} for i in range(n)]))' "$N" > "$WORK/vms.json"
printf admin > "$WORK/nsx/username"; printf 'bench-%s' "$RANDOM$RANDOM" > "$WORK/nsx/password"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/token"
"$M" nsx-sim --listen "127.0.0.1:$NSX_PORT" --plain-http --password-file "$WORK/nsx/password" --vms "$WORK/vms.json" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
# Owners get their notices through a webhook that accepts everything: a notice that cannot be
# delivered is retried every minute, and each retry rewrites the policy's status.
NOTICE_PORT=$(free_port)
python3 -c 'import http.server as h, sys
class H(h.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0))); self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
h.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$NOTICE_PORT" &
PIDS+=($!)
kubectl create namespace bench >/dev/null
CPID=""; HTTP_PORT=""; INGEST_PORT=""; SYSLOG_PORT=""
# start_controller LABEL [ENV=VALUE...]: starts a controller, waits until it is ready.
start_controller() {
  local label="$1"; shift
  HTTP_PORT=$(free_port); INGEST_PORT=$(free_port); SYSLOG_PORT=$(free_port)
  env "$@" ${MICROSEG_BENCH_WRAP:-} "$M" controller --cluster bench --namespace bench --nsx-url "http://127.0.0.1:$NSX_PORT" --nsx-insecure-allow-http \
    --nsx-auth session --nsx-credentials-dir "$WORK/nsx" --nsx-rate-limit 1000 --nsx-concurrency 20 \
    --http-addr "127.0.0.1:$HTTP_PORT" --ingest-addr "127.0.0.1:$INGEST_PORT" --syslog-tcp-addr "127.0.0.1:$SYSLOG_PORT" \
    --ingest-token-file "$WORK/token" --ingest-rate 10000000 --ingest-burst-lines 1000000 --syslog-rate 10000000 --syslog-burst-lines 1000000 \
    --monitor-max-flows 500 >"$WORK/controller-$label.log" 2>&1 &
  CPID=$!; PIDS+=($CPID)
  until curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; do sleep 0.5; done
}
# A wrapper (MICROSEG_BENCH_WRAP) leaves its child running when it is killed: the child first.
stop_controller() { pkill -P "$CPID" 2>/dev/null || true; kill "$CPID"; wait "$CPID" 2>/dev/null || true; }
# quiet: waits until no reconcile ran for 3 s (the start-up resync of every policy is over).
quiet() {
  local last=-1 now
  while :; do
    now=$(curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^microseg_reconcile_total/{s+=$NF} END{print s+0}')
    [ "$now" = "$last" ] && return 0
    last=$now; sleep 3
  done
}
start_controller new
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ); LATER=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
python3 - "$N" "$NOW" "$LATER" "$NOTICE_PORT" > "$WORK/policies.yaml" <<'PY'
import sys
n, now, later, notice = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print(f"""apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {{name: wave, namespace: bench}}
spec: {{notifyAt: "{now}", monitorFrom: "{now}", enforceAt: "{later}", minimumNotice: 1s}}""")
for i in range(n):
    rules = "\n".join(f"    - {{name: r{k}, direction: Inbound, peers: [{{cidr: 10.0.0.0/8}}], ports: [{{protocol: TCP, port: {1000 + k}}}], logged: true}}" for k in range(10))
    print(f"""---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {{name: app-{i:04}, namespace: bench}}
spec:
  owners: [{{name: Team {i}, webhook: "http://127.0.0.1:{notice}/app-{i:04}"}}]
  criticality: Low
  window: {{name: wave}}
  members: [{{vmTag: {{scope: app, tag: app-{i:04}}}}}]
  rules:
{rules}
  catchAll: {{inbound: true, outbound: true}}""")
PY
kubectl apply --server-side -f "$WORK/policies.yaml" >/dev/null
echo "waiting for $N policies of 10 rules to monitor"
until [ "$(kubectl get segpol -n bench -o json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["items"] if (p.get("status") or {}).get("phase")=="Monitoring" and len(((p["status"].get("nsx") or {}).get("ruleIds") or {})) == 12))')" -ge "$N" ]; do sleep 2; done
kubectl get segpol -n bench -o json > "$WORK/ids.json"
quiet

cat > "$WORK/load.py" <<'PY'
# python3 load.py WORK LABEL HTTP_PORT SYSLOG_PORT CPID SECS SENDERS BATCH REPS DISTINCT APISERVER_PID
import datetime, http.client, json, os, socket, statistics, sys, threading, time
work, label = sys.argv[1], sys.argv[2]
port, syslog_port, cpid = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
secs, senders, batch, reps, distinct = float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
apiserver = sys.argv[11]
token = open(f"{work}/token").read().strip()
items = json.load(open(f"{work}/ids.json"))["items"]
per = distinct // len(items)
def vm(i): return f"10.{100 + i // 250}.{i % 250}.1"
# Per application: the line after the timestamp for each of its distinct unmatched flows (one in
# twenty outbound) and for each explicit rule.
apps = []
for p in items:
    i = int(p["metadata"]["name"].split("-")[1]); ids = p["status"]["nsx"]["ruleIds"]
    flows = []
    for f in range(per):
        src = f"10.7.{f // 250 % 250}.{f % 250}"
        if f % 20 == 19:
            flows.append(f"2d4b6e2d INET match PASS {ids['catchall_out']} OUT 60 UDP {vm(i)}/40000->172.16.{f // 250 % 250}.{f % 250}/53")
        else:
            flows.append(f"2d4b6e2d INET match PASS {ids['catchall_in']} IN 60 TCP {src}/51000->{vm(i)}/{8000 + f % 50} S")
    explicit = [f"2d4b6e2d INET match PASS {ids[f'r{k}']} IN 60 TCP 10.9.0.{k + 1}/52000->{vm(i)}/{1000 + k} S" for k in range(10)]
    apps.append({"flows": flows, "explicit": explicit, "cursor": 0})
def stamp(): return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
def tails(app, n):
    out = []; a = apps[app]
    for j in range(n):
        if j % 10 == 9:
            out.append(a["explicit"][j // 10 % 10])
        else:
            out.append(a["flows"][a["cursor"] % per]); a["cursor"] += 1
    return out
lock = threading.Lock(); seq = [0]
def next_batch():
    with lock:
        seq[0] += 1; b = seq[0]; app = b % len(apps)
        return b, app, tails(app, batch)
class Conn:
    def __init__(self): self.c = None
    def post(self, path, body, key):
        for _ in range(100):
            try:
                if self.c is None: self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                ctype = "application/json" if path.endswith("loginsight") else "text/plain"
                self.c.request("POST", path, body, {"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": ctype})
                r = self.c.getresponse(); data = r.read()
                if r.status == 200: return json.loads(data)
                print(f"{path}: {r.status} {data[:300]!r}", file=sys.stderr); time.sleep(0.2)
            except (OSError, http.client.HTTPException) as e:
                print(f"{path}: {e}", file=sys.stderr); self.c = None; time.sleep(0.2)
        raise SystemExit(f"{path}: gave up")
acked = [0]
def http_sender(path, until, run):
    c = Conn(); n = 0
    while time.time() < until:
        b, app, ts = next_batch(); now = stamp()
        if path.endswith("loginsight"):
            ms = int(time.time() * 1000)
            body = json.dumps({"AlertType": 1, "AlertName": "DFW unmatched", "SearchPeriod": 300000, "HitCount": 0.0, "HitOperator": 2,
                "messages": [{"text": f"{now} {t}", "timestamp": ms, "fields": []} for t in ts],
                "HasMoreResults": False, "Url": None, "EditUrl": None, "Info": "", "Recommendation": None, "NumHits": len(ts)})
        else:
            body = "\n".join(f"{now} {t}" for t in ts)
        c.post(path, body, f"{label}-{run}-{b}"); n += len(ts)
    with lock: acked[0] += n
def sentinel(c, key):
    return c.post("/ingest/lines", f"{stamp()} {apps[0]['explicit'][0]}", key)
def syslog_sender(until, sent):
    s = socket.create_connection(("127.0.0.1", syslog_port)); n = 0
    while time.time() < until:
        b, app, ts = next_batch(); now = stamp()
        s.sendall("".join(f"<134>{now} esx{app % 64:02} dfwpktlogs: {t}\n" for t in ts).encode()); n += len(ts)
    s.close()
    with lock: sent[0] += n
results = {"label": label, "phases": {}, "acked": 0}
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def timed(name, run):
    rates, costs = [], []
    for r in range(reps):
        c0 = cpu(cpid); a0 = cpu(apiserver)
        lines, dt = run(r)
        c1 = cpu(cpid) - c0; a1 = cpu(apiserver) - a0
        rates.append(lines / dt); costs.append((c1, a1, lines)); results["acked"] += lines
        print(f"  {label} {name} #{r + 1}: {lines} lines in {dt:.1f} s = {lines / dt:,.0f} lines/s; "
              f"CPU s per 100,000 lines: controller {c1 * 1e5 / lines:.2f}, API server {a1 * 1e5 / lines:.2f}", flush=True)
    results["phases"][name] = rates; results.setdefault("cpu", {})[name] = costs
def http_phase(path):
    def run(r):
        acked[0] = 0; t0 = time.time()
        ths = [threading.Thread(target=http_sender, args=(path, t0 + secs, r)) for _ in range(senders)]
        [t.start() for t in ths]; [t.join() for t in ths]
        return acked[0], time.time() - t0
    return run
def syslog_phase(r):
    sent = [0]; t0 = time.time()
    ths = [threading.Thread(target=syslog_sender, args=(t0 + secs, sent)) for _ in range(senders)]
    [t.start() for t in ths]; [t.join() for t in ths]
    # Every syslog line has been read once the counter has them all; a batch acknowledged after
    # that was recorded after them.
    while True:
        m = http.client.HTTPConnection("127.0.0.1", int(os.environ["BENCH_METRICS_PORT"])); m.request("GET", "/metrics"); text = m.getresponse().read().decode()
        got = sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("microseg_ingest_lines_total") and 'source="syslog_tcp"' in l)
        if got >= results.setdefault("syslog_counted", 0) + sent[0]: break
        time.sleep(0.05)
    results["syslog_counted"] = got
    sentinel(Conn(), f"{label}-syslog-{r}")
    results["acked"] += 1
    return sent[0], time.time() - t0
def totals():
    import subprocess
    ps = json.loads(subprocess.check_output(["kubectl", "get", "segpol", "-n", "bench", "-o", "json"]))["items"]
    ms = [(p.get("status") or {}).get("monitor") or {} for p in ps]
    return {"counted": sum(m.get("unmatchedTotal", 0) + m.get("healthyTotal", 0) for m in ms),
            "flows": sum(len(m.get("flows", [])) for m in ms), "overflow": sum(m.get("overflow", 0) for m in ms),
            "status_bytes": max(len(json.dumps(p.get("status") or {})) for p in ps)}
before = totals()
results["rss_start_kib"] = int(next(l.split()[1] for l in open(f"/proc/{cpid}/status") if l.startswith("VmRSS")))
# Fill: every distinct flow once, one application per batch.
t0 = time.time(); filled = 0; lock_fill = threading.Lock(); queue = list(range(len(apps)))
def filler():
    global filled
    c = Conn()
    while True:
        with lock_fill:
            if not queue: return
            app = queue.pop()
        body = "\n".join(f"{stamp()} {t}" for t in apps[app]["flows"])
        c.post("/ingest/lines", body, f"{label}-fill-{app}")
        with lock_fill: filled += per
ths = [threading.Thread(target=filler) for _ in range(senders)]; [t.start() for t in ths]; [t.join() for t in ths]
dt = time.time() - t0
print(f"  {label} fill: {filled} distinct flows in {dt:.1f} s = {filled / dt:,.0f} lines/s", flush=True)
results["phases"]["fill"] = [filled / dt]; results["acked"] += filled
timed("webhook", http_phase("/ingest/loginsight"))
timed("lines", http_phase("/ingest/lines"))
timed("syslog", syslog_phase)
after = totals()
status = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{cpid}/status") if l.startswith(("VmRSS", "VmHWM"))}
results.update(rss_kib=status["VmRSS"], hwm_kib=status["VmHWM"], before=before, after=after)
json.dump(results, open(f"{work}/result-{label}.json", "w"))
PY
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run_load() { BENCH_METRICS_PORT="$HTTP_PORT" python3 "$WORK/load.py" "$WORK" "$1" "$INGEST_PORT" "$SYSLOG_PORT" "$CPID" "$SECS" "$SENDERS" "$BATCH" "$REPS" "$DISTINCT" "$(cat "$WORK/kubeconfig.pid")"; }
run_load new
stop_controller
if [ "$BASELINE" = 1 ]; then
  start_controller baseline MICROSEG_INGEST_BASELINE=1
  quiet
  run_load baseline
  stop_controller
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK" "$N" "$SENDERS" "$BATCH" "$REPS" "$SECS" <<'PY'
import json, os, statistics, sys
work, n, senders, batch, reps, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
res = {l: json.load(open(f"{work}/result-{l}.json")) for l in ("new", "baseline") if os.path.exists(f"{work}/result-{l}.json")}
def rate(r, phase):
    xs = r["phases"][phase]
    if len(xs) == 1: return f"{xs[0]:>9,.0f}"
    return f"{statistics.median(xs):>9,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"
print(f"\n{n} policies x 10 rules, 100,000 distinct flows, {senders} senders, {batch} lines per batch, {reps} x {secs} s per phase")
print(f"{'figure':<42}{'target':<12}{'this build':<28}{'baseline (index per batch)':<28}")
rows = [("webhook /ingest/loginsight lines/s", ">= 100,000", "webhook"), ("/ingest/lines lines/s", ">= 100,000", "lines"),
        ("syslog TCP lines/s", ">= 100,000", "syslog"), ("fill, 100,000 new flows, lines/s", "-", "fill")]
for name, target, phase in rows:
    print(f"{name:<42}{target:<12}{rate(res['new'], phase):<28}{rate(res['baseline'], phase) if 'baseline' in res else '-':<28}")
def cost(r, phase, which):
    xs = [c[which] * 1e5 / c[2] for c in r.get("cpu", {}).get(phase, [])]
    return f"{statistics.median(xs):.2f}" if xs else "-"
for name, phase in [("webhook", "webhook"), ("/ingest/lines", "lines"), ("syslog", "syslog")]:
    for which, who in [(0, "controller"), (1, "API server")]:
        label = f"{who} CPU s / 100k lines, {name}"
        print(f"{label:<42}{'-':<12}{cost(res['new'], phase, which):<28}{cost(res['baseline'], phase, which) if 'baseline' in res else '-':<28}")
def mib(r, k): return f"{r[k] / 1024:.1f} MiB"
for name, target, key in [("controller peak RSS", "<= 150 MiB", "hwm_kib"), ("controller RSS before the load", "-", "rss_start_kib"),
                          ("controller RSS at the end", "<= 150 MiB", "rss_kib")]:
    print(f"{name:<42}{target:<12}{mib(res['new'], key):<28}{mib(res['baseline'], key) if 'baseline' in res else '-':<28}")
last = res.get("baseline", res["new"])["after"]
print(f"{'largest status object':<42}{'< 1.5 MiB':<12}{last['status_bytes'] / 1024:.0f} KiB (JSON of .status)")
print(f"flows in status: {last['flows']} kept, {last['overflow']} in overflow")
for l, r in res.items():
    counted = r['after']['counted'] - r['before']['counted']
    verdict = "equals" if counted == r["acked"] else "DIFFERS FROM"
    print(f"{l}: status.monitor counted {counted:,} lines during the run; {verdict} the {r['acked']:,} acknowledged (HTTP 200) or sent (syslog)")
PY
