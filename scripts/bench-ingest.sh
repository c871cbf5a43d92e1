#!/usr/bin/env bash
# Ingestion benchmark (not a test): DFW log lines through POST /ingest/lines with status writes
# on, against the local control plane and the NSX simulator.
# Prints: acknowledged events per second through the Log Insight webhook and the line endpoint (every 200 means the lines are in status.monitor), the
# check that status counts exactly what was acknowledged, and the controller's memory before and
# after 100,000 distinct unmatched flows.
#
#   bash scripts/bench-ingest.sh [POLICIES] [SECONDS] [SENDERS] [LINES_PER_BATCH]   (20 20 8 500)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
N="${1:-20}"; SECS="${2:-20}"; SENDERS="${3:-8}"; BATCH="${4:-500}"
ROOT="$PWD"; WORK="$ROOT/.tmp/bench-ingest"; rm -rf "$WORK"; mkdir -p "$WORK/nsx"
PIDS=()
cleanup() { set +e; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; bash tests/control-plane/run.sh stop "$WORK/kubeconfig" >/dev/null 2>&1; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cargo build --quiet --release --bin microseg
M="$ROOT/target/release/microseg"
bash tests/control-plane/run.sh build
CONTROL_PLANE_WATCH_PID=$$ bash tests/control-plane/run.sh start "$WORK/kubeconfig" >/dev/null
export KUBECONFIG="$WORK/kubeconfig"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/segmentationpolicies.microseg.io crd/enforcementwindows.microseg.io >/dev/null
NSX_PORT=$(free_port); HTTP_PORT=$(free_port)
python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps([{"name": f"app-{i:04}-vm", "ips": [f"10.100.{i}.1"], "tags": [{"scope": "app", "tag": f"app-{i:04}"}]} for i in range(n)]))' "$N" > "$WORK/vms.json"
printf admin > "$WORK/nsx/username"; printf 'bench-%s' "$RANDOM$RANDOM" > "$WORK/nsx/password"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/token"
"$M" nsx-sim --listen "127.0.0.1:$NSX_PORT" --plain-http --password-file "$WORK/nsx/password" --vms "$WORK/vms.json" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
kubectl create namespace bench >/dev/null
"$M" controller --cluster bench --namespace bench --nsx-url "http://127.0.0.1:$NSX_PORT" --nsx-auth session \
  --nsx-credentials-dir "$WORK/nsx" --http-addr "127.0.0.1:$HTTP_PORT" --ingest-token-file "$WORK/token" \
  --ingest-rate 1000000 --ingest-burst-lines 100000 --monitor-max-flows 500 >"$WORK/controller.log" 2>&1 &
CPID=$!; PIDS+=($CPID)
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ); LATER=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
python3 - "$N" "$NOW" "$LATER" > "$WORK/policies.yaml" <<'PY'
import sys
n, now, later = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f"""apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {{name: wave, namespace: bench}}
spec: {{notifyAt: "{now}", monitorFrom: "{now}", enforceAt: "{later}", minimumNotice: 1s}}""")
for i in range(n):
    print(f"""---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {{name: app-{i:04}, namespace: bench}}
spec:
  owners: [{{name: Team {i}, email: team{i}@example.com}}]
  criticality: Low
  window: {{name: wave}}
  members: [{{vmTag: {{scope: app, tag: app-{i:04}}}}}]
  rules:
    - {{name: https, direction: Inbound, peers: [{{cidr: 10.0.0.0/8}}], ports: [{{protocol: TCP, port: 443}}], logged: true}}
  catchAll: {{inbound: true, outbound: true}}""")
PY
kubectl apply --server-side -f "$WORK/policies.yaml" >/dev/null
echo "waiting for $N policies to monitor"
until [ "$(kubectl get segpol -n bench -o json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["items"] if (p.get("status") or {}).get("phase")=="Monitoring" and "catchall_in" in ((p["status"].get("nsx") or {}).get("ruleIds") or {})))')" -ge "$N" ]; do sleep 1; done
kubectl get segpol -n bench -o json > "$WORK/ids.json"
RSS0=$(awk '/VmRSS/{print $2}' /proc/$CPID/status)
python3 - "$WORK" "$HTTP_PORT" "$SECS" "$SENDERS" "$BATCH" "$CPID" "$RSS0" <<'PY'
import json, sys, time, threading, http.client, datetime, subprocess
work, port, secs, senders, batch, cpid, rss0 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
token = open(f"{work}/token").read().strip()
apps = [(i, p["status"]["nsx"]["ruleIds"]["catchall_in"]) for i, p in enumerate(json.load(open(f"{work}/ids.json"))["items"])]
def line(app, rule, src, dport):
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{ts} 2d4b6e2d INET match PASS {rule} IN 60 TCP 10.7.{src // 250 % 250}.{src % 250}/51000->10.100.{app}.1/{dport} S"
def post(body, key, path="/ingest/lines"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, body, {"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": "application/json" if path.endswith("loginsight") else "text/plain"})
    r = c.getresponse(); r.read(); c.close(); return r.status
acked = [0] * senders; seq = [0]
lock = threading.Lock()
def sender(k, until, path):
    n = 0
    while time.time() < until:
        with lock: seq[0] += 1; b = seq[0]
        app, rule = apps[b % len(apps)]
        lines = [line(app, rule, j % 20, 8000 + j % 20) for j in range(batch)]
        if path.endswith("loginsight"):
            body = json.dumps({"AlertType": 1, "AlertName": "DFW unmatched", "SearchPeriod": 300000, "HitCount": 0.0, "HitOperator": 2,
                "messages": [{"text": l, "timestamp": int(time.time() * 1000), "fields": []} for l in lines],
                "HasMoreResults": False, "Url": None, "EditUrl": None, "Info": "", "Recommendation": None, "NumHits": len(lines)})
        else:
            body = "\n".join(lines)
        while post(body, f"tp-{b}", path) != 200: time.sleep(0.2)
        acked[k] += batch
def run(path, secs):
    acked[:] = [0] * senders
    t0 = time.time(); ths = [threading.Thread(target=sender, args=(k, t0 + secs, path)) for k in range(senders)]
    [t.start() for t in ths]; [t.join() for t in ths]; dt = time.time() - t0
    print(f"{path}: {sum(acked)} events acknowledged in {dt:.1f} s = {sum(acked)/dt:,.0f} events/s ({senders} senders, {batch} per batch, {len(apps)} policies, status written before every 200)")
    return sum(acked), dt
li, _ = run("/ingest/loginsight", secs / 2)
total, dt = run("/ingest/lines", secs)
total += li
items = json.loads(subprocess.check_output(["kubectl", "get", "segpol", "-n", "bench", "-o", "json"]))["items"]
counted = sum((p["status"].get("monitor") or {}).get("unmatchedTotal", 0) for p in items)
print(f"status.monitor.unmatchedTotal summed over policies: {counted} ({'equals' if counted == total else 'DIFFERS FROM'} the acknowledged lines)")
# 100,000 distinct unmatched flows: distinct (source, destination port) per application.
distinct = 100_000; per = distinct // len(apps); sent = 0; b = 0
t1 = time.time()
for i, (app, rule) in enumerate(apps):
    for start in range(0, per, 5000):
        body = "\n".join(line(app, rule, 1000 + s, 10000 + s // 60000) for s in range(start, min(per, start + 5000)))
        b += 1
        while post(body, f"mem-{b}") != 200: time.sleep(0.2)
        sent += min(per, start + 5000) - start
rss1 = int(next(l.split()[1] for l in open(f"/proc/{cpid}/status") if l.startswith("VmRSS")))
hwm = int(next(l.split()[1] for l in open(f"/proc/{cpid}/status") if l.startswith("VmHWM")))
items = json.loads(subprocess.check_output(["kubectl", "get", "segpol", "-n", "bench", "-o", "json"]))["items"]
kept = sum(len((p["status"].get("monitor") or {}).get("flows", [])) for p in items)
over = sum((p["status"].get("monitor") or {}).get("overflow", 0) for p in items)
size = max(len(json.dumps(p["status"])) for p in items)
print(f"distinct unmatched flows: {sent} sent in {time.time()-t1:.1f} s; kept in status {kept}, counted as overflow {over}; largest status {size/1024:.0f} KiB")
print(f"controller RSS: {rss0/1024:.1f} MiB before, {rss1/1024:.1f} MiB after 100,000 distinct flows (peak {hwm/1024:.1f} MiB)")
PY
