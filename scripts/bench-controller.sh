#!/usr/bin/env bash
# Scale benchmark of the controller (not a test): N policies of 10 rules each against the NSX
# simulator at NSX's default limit of 100 requests/s, on the local control plane.
# Prints: time from apply to all Monitoring and Synced; NSX calls per policy; the spread of
# lateness when all N reach enforceAt in the same second; NSX writes during a resync with
# nothing changed (must be 0); controller peak RSS and CPU seconds.
#
#   bash scripts/bench-controller.sh [N]      (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
N="${1:-1000}"
ROOT="$PWD"; WORK="$ROOT/.tmp/bench"; rm -rf "$WORK"; mkdir -p "$WORK/mail" "$WORK/nsx" "$WORK/notify"
PIDS=()
cleanup() { set +e; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; bash tests/control-plane/run.sh stop "$WORK/kubeconfig" >/dev/null 2>&1; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cargo build --quiet --release --bin microseg
M="$ROOT/target/release/microseg"
bash tests/control-plane/run.sh build; bash tests/support/setup.sh >/dev/null
CONTROL_PLANE_WATCH_PID=$$ bash tests/control-plane/run.sh start "$WORK/kubeconfig" >/dev/null
export KUBECONFIG="$WORK/kubeconfig"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/segmentationpolicies.microseg.io crd/enforcementwindows.microseg.io >/dev/null
NSX_PORT=$(free_port); HTTP_PORT=$(free_port)
python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps([{"name": f"app-{i:04}-vm", "ips": [f"10.{100 + i // 250}.{i % 250}.1"], "tags": [{"scope": "app", "tag": f"app-{i:04}"}]} for i in range(n)]))' "$N" > "$WORK/vms.json"
printf admin > "$WORK/nsx/username"; printf 'bench-%s' "$RANDOM$RANDOM" > "$WORK/nsx/password"
"$M" nsx-sim --listen "127.0.0.1:$NSX_PORT" --plain-http --password-file "$WORK/nsx/password" --rate-limit 100 --vms "$WORK/vms.json" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
"$ROOT/.tmp/venv/bin/python" tests/support/smtp_sink.py "$WORK/mail" >"$WORK/smtp.out" 2>"$WORK/smtp.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '^PORT ' "$WORK/smtp.out" 2>/dev/null && break; sleep 0.1; done
printf 127.0.0.1 > "$WORK/notify/smtp-host"; awk '/^PORT /{printf $2}' "$WORK/smtp.out" > "$WORK/notify/smtp-port"
printf insecure-plaintext > "$WORK/notify/smtp-tls"; printf 'microseg <microseg@example.com>' > "$WORK/notify/smtp-from"
kubectl create namespace bench >/dev/null
RESYNC=60
"$M" controller --cluster bench --namespace bench --nsx-url "http://127.0.0.1:$NSX_PORT" --nsx-auth session \
  --nsx-credentials-dir "$WORK/nsx" --notify-config-dir "$WORK/notify" --nsx-rate-limit 95 --nsx-concurrency 20 \
  --reminder-before 1s --resync "${RESYNC}s" --http-addr "127.0.0.1:$HTTP_PORT" >"$WORK/controller.log" 2>&1 &
CPID=$!; PIDS+=($CPID)

at() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
T0=$(date +%s)
ENFORCE=$(( T0 + 60 + N * 12 / 100 ))   # room for all N to reach Monitoring first
python3 - "$N" "$(at "$T0")" "$(at "$ENFORCE")" "$(at $((ENFORCE + 3600)))" > "$WORK/policies.yaml" <<'PY'
import sys
n, notify, enforce, cleanup = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print(f"""apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {{name: wave, namespace: bench}}
spec:
  notifyAt: "{notify}"
  monitorFrom: "{notify}"
  enforceAt: "{enforce}"
  cleanupAt: "{cleanup}"
  minimumNotice: 10s
  postEnforcementMonitoring: 1h""")
for i in range(n):
    rules = "\n".join(f"""    - name: r{j}
      direction: {"Inbound" if j % 2 == 0 else "Outbound"}
      peers: [{{cidr: 10.{i // 250}.{i % 250}.{j * 8}/29}}]
      ports: [{{protocol: TCP, port: {8000 + j}}}]""" for j in range(10))
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
{rules}""")
PY
echo "applying $N policies (enforceAt $(at "$ENFORCE"))"
APPLY_START=$(date +%s.%N)
kubectl apply --server-side -f "$WORK/policies.yaml" >/dev/null
APPLY_DONE=$(date +%s.%N)

count() { kubectl get segpol -n bench -o json | python3 -c '
import json,sys
items=json.load(sys.stdin)["items"]
def ok(p):
    s=p.get("status") or {}
    c={x["type"]:x["status"] for x in s.get("conditions",[])}
    return s.get("phase")==sys.argv[1] and c.get("Synced")=="True"
print(sum(ok(p) for p in items))' "$1"; }
while [ "$(count Monitoring)" -lt "$N" ]; do sleep 2; [ $(date +%s) -lt $ENFORCE ] || break; done
ALL_MON=$(date +%s.%N)
curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" > "$WORK/counters-monitoring.json"
while [ "$(count Enforcing)" -lt "$N" ]; do sleep 2; [ $(date +%s) -lt $((ENFORCE + 600)) ] || break; done
ALL_ENF=$(date +%s.%N)
curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" > "$WORK/counters-enforcing.json"
kubectl get segpol -n bench -o json > "$WORK/policies-enforcing.json"
curl -s -X DELETE "http://127.0.0.1:$NSX_PORT/admin/counters" >/dev/null || curl -s -X POST "http://127.0.0.1:$NSX_PORT/admin/counters/reset" >/dev/null
echo "waiting one resync period (${RESYNC}s + 15s) with nothing changed"
sleep $((RESYNC + 15))
curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" > "$WORK/counters-resync.json"
RSS=$(awk '/VmHWM/{print $2}' /proc/$CPID/status)
CPU=$(awk '{printf "%.1f", ($14+$15)/100}' /proc/$CPID/stat)
python3 - "$N" "$APPLY_START" "$APPLY_DONE" "$ALL_MON" "$ALL_ENF" "$(at "$ENFORCE")" "$WORK" "$RSS" "$CPU" <<'PY'
import json, sys, datetime
n, a0, a1, mon, enf, enforce_at, work, rss, cpu = sys.argv[1:]
n=int(n); a0,a1,mon,enf=map(float,(a0,a1,mon,enf))
def load(f): return json.load(open(f"{work}/{f}"))
def total(c, pred=lambda k: True): return sum(v["total"] for k,v in c.items() if pred(k))
cm, ce, cr = load("counters-monitoring.json"), load("counters-enforcing.json"), load("counters-resync.json")
ts = datetime.datetime.strptime(enforce_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
late=[]
for p in load("policies-enforcing.json")["items"]:
    for h in p["status"]["history"]:
        if h["phase"]=="Enforcing":
            t=datetime.datetime.strptime(h["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
            late.append(t-ts)
late.sort()
print(f"policies: {n} x 10 rules; NSX simulator limit 100 req/s; client 95 req/s, 20 concurrent")
print(f"apply (kubectl, server-side): {a1-a0:.1f} s")
print(f"apply -> all Monitoring and Synced: {mon-a0:.1f} s")
print(f"NSX calls to reach Monitoring: {total(cm)} ({total(cm)/n:.2f} per policy): " + ", ".join(f"{k}={v['total']}" for k,v in sorted(cm.items())))
print(f"NSX calls Monitoring -> Enforcing: {total(ce)-total(cm)} ({(total(ce)-total(cm))/n:.2f} per policy)")
print(f"enforcement lateness vs enforceAt (status history, 1 s resolution): first {late[0]:.0f} s, median {late[len(late)//2]:.0f} s, last {late[-1]:.0f} s (n={len(late)})")
print(f"resync with nothing changed: PATCH /infra = {total(cr, lambda k: k.startswith('PATCH'))}, reads = {total(cr, lambda k: k.startswith('GET'))}")
print(f"controller peak RSS {int(rss)/1024:.0f} MiB, CPU {cpu} s")
PY
