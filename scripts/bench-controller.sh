#!/usr/bin/env bash
# Scale benchmark of the controller (not a test): N policies of 10 rules each against the NSX
# simulator at NSX's default limit of 100 requests/s, on the local control plane.
# Runs twice on the same control plane, each time with a fresh simulator and namespace: microseg
# as built (NSX cache, batched writes) and the baseline `--nsx-cache=false --nsx-batch-window=0s
# --reconcile-concurrency=16 --transition-lead=0s`
# (one GET per object per reconcile, one write per application: the behaviour before issue
# #22). Prints, side by side: time from apply to all Monitoring and Synced; NSX calls per
# policy; the spread of lateness when all N reach enforceAt in the same second; NSX writes,
# NSX calls and status writes (policies whose resourceVersion moved) during a resync with
# nothing changed; controller peak RSS and CPU seconds.
#
#   bash scripts/bench-controller.sh [N] [variants]   (default 1000, "cache baseline")
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
N="${1:-1000}"
VARIANTS="${2:-cache baseline}"
ROOT="$PWD"; WORK="$ROOT/.tmp/bench"; rm -rf "$WORK"; mkdir -p "$WORK/mail" "$WORK/nsx" "$WORK/notify"
PIDS=()
cleanup() { set +e; for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done; wait 2>/dev/null; bash tests/control-plane/run.sh stop "$WORK/kubeconfig" >/dev/null 2>&1; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cargo build --quiet --release --bin microseg
M="$ROOT/target/release/microseg"
# Profiling: MICROSEG_BENCH_CONTROLLER_BIN runs another build of the controller (e.g. one without
# mimalloc), MICROSEG_BENCH_WRAP prefixes its command (e.g. "heaptrack -o /tmp/ctl").
CM="${MICROSEG_BENCH_CONTROLLER_BIN:-$M}"
bash tests/control-plane/run.sh build; [ -x .tmp/venv/bin/python ] && .tmp/venv/bin/python -c "import aiosmtpd" 2>/dev/null || bash tests/support/setup.sh >/dev/null
CONTROL_PLANE_WATCH_PID=$$ bash tests/control-plane/run.sh start "$WORK/kubeconfig" >/dev/null
export KUBECONFIG="$WORK/kubeconfig"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/segmentationpolicies.microseg.io crd/enforcementwindows.microseg.io >/dev/null
printf admin > "$WORK/nsx/username"; printf 'bench-%s' "$RANDOM$RANDOM" > "$WORK/nsx/password"
"$ROOT/.tmp/venv/bin/python" tests/support/smtp_sink.py "$WORK/mail" >"$WORK/smtp.out" 2>"$WORK/smtp.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '^PORT ' "$WORK/smtp.out" 2>/dev/null && break; sleep 0.1; done
printf 127.0.0.1 > "$WORK/notify/smtp-host"; awk '/^PORT /{printf $2}' "$WORK/smtp.out" > "$WORK/notify/smtp-port"
printf insecure-plaintext > "$WORK/notify/smtp-tls"; printf 'microseg <microseg@example.com>' > "$WORK/notify/smtp-from"
python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps([{"name": f"app-{i:04}-vm", "ips": [f"10.{100 + i // 250}.{i % 250}.1"], "tags": [{"scope": "app", "tag": f"app-{i:04}"}]} for i in range(n)]))' "$N" > "$WORK/vms.json"
RESYNC=60
at() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# One run: fresh simulator, namespace bench-$1, controller with flags $2.
variant() {
  local V="$1" FLAGS="$2" NS="bench-$1" D="$WORK/$1"
  mkdir -p "$D"
  local NSX_PORT HTTP_PORT SIM CPID
  NSX_PORT=$(free_port); HTTP_PORT=$(free_port)
  "$M" nsx-sim --listen "127.0.0.1:$NSX_PORT" --plain-http --password-file "$WORK/nsx/password" --rate-limit 100 --vms "$WORK/vms.json" >"$D/sim.log" 2>&1 &
  SIM=$!; PIDS+=($SIM)
  kubectl create namespace "$NS" >/dev/null
  # The Reminder (48 h before enforceAt by default) comes 120 s before it in this compressed
  # timeline: after every application is Monitoring, and, as in production, done before the
  # member check (the minute before enforceAt) and the flip's lead (10 s). With 45 s, 1,000
  # reminder mails to the test SMTP sink (~30 a second) and their status writes overlapped the
  # lead and a third of the wave decided at the instant instead of ahead of it (session 10).
  # shellcheck disable=SC2086
  ${MICROSEG_BENCH_WRAP:-} "$CM" controller --cluster bench --namespace "$NS" --nsx-url "http://127.0.0.1:$NSX_PORT" --nsx-insecure-allow-http --nsx-auth session \
    --nsx-credentials-dir "$WORK/nsx" --notify-config-dir "$WORK/notify" --nsx-rate-limit 95 --nsx-concurrency 20 \
    --reminder-before 120s --resync "${RESYNC}s" --http-addr "127.0.0.1:$HTTP_PORT" $FLAGS >"$D/controller.log" 2>&1 &
  CPID=$!; PIDS+=($CPID)
  # The controller's RSS twice a second (seconds since the epoch, KiB; and of it, KiB in
  # transparent huge pages), to place its peak.
  ( while [ -r "/proc/$CPID/status" ]; do echo "$(date +%s.%N) $(awk '/VmRSS/{print $2}' "/proc/$CPID/status" 2>/dev/null) $(awk '/AnonHugePages/{print $2}' "/proc/$CPID/smaps_rollup" 2>/dev/null)"; sleep 0.5; done ) > "$D/rss.tsv" 2>/dev/null &
  PIDS+=($!)
  local T0 ENFORCE APPLY_START APPLY_DONE ALL_MON ALL_ENF RSS CPU
  T0=$(date +%s)
  ENFORCE=$(( T0 + 120 + N * 15 / 100 ))   # room for all N to reach Monitoring, then the Reminder
  python3 - "$N" "$(at "$T0")" "$(at "$ENFORCE")" "$(at $((ENFORCE + 3600)))" "$NS" > "$D/policies.yaml" <<'PY'
import sys
n, notify, enforce, cleanup, ns = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
print(f"""apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {{name: wave, namespace: {ns}}}
spec:
  notifyAt: "{notify}"
  monitorFrom: "{notify}"
  enforceAt: "{enforce}"
  cleanupAt: "{cleanup}"
  minimumNotice: 10s
  postEnforcementMonitoring: 1h
  gates: {{waive: [Blind, QuietPeriod]}}  # no DFW log source in this benchmark""")
for i in range(n):
    rules = "\n".join(f"""    - name: r{j}
      direction: {"Inbound" if j % 2 == 0 else "Outbound"}
      peers: [{{cidr: 10.{i // 250}.{i % 250}.{j * 8}/29}}]
      ports: [{{protocol: TCP, port: {8000 + j}}}]""" for j in range(10))
    print(f"""---
apiVersion: microseg.io/v1alpha1
kind: SegmentationPolicy
metadata: {{name: app-{i:04}, namespace: {ns}}}
spec:
  owners: [{{name: Team {i}, email: team{i}@example.com}}]
  criticality: Low
  window: {{name: wave}}
  members: [{{vmTag: {{scope: app, tag: app-{i:04}}}}}]
  rules:
{rules}""")
PY
  echo "[$V] applying $N policies (enforceAt $(at "$ENFORCE")), controller flags: ${FLAGS:-(none)}"
  APPLY_START=$(date +%s.%N)
  kubectl apply --server-side -f "$D/policies.yaml" >/dev/null
  APPLY_DONE=$(date +%s.%N)
  count() { kubectl get segpol -n "$NS" -o json | python3 -c '
import json,sys
items=json.load(sys.stdin)["items"]
def ok(p):
    s=p.get("status") or {}
    c={x["type"]:x["status"] for x in s.get("conditions",[])}
    return s.get("phase")==sys.argv[1] and c.get("Synced")=="True"
print(sum(ok(p) for p in items))' "$1"; }
  while [ "$(count Monitoring)" -lt "$N" ]; do sleep 1; [ "$(date +%s)" -lt "$ENFORCE" ] || break; done
  ALL_MON=$(date +%s.%N)
  local HWM_MON HWM_ENF
  HWM_MON=$(awk '/VmHWM/{print $2}' "/proc/$CPID/status")
  curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" > "$D/counters-monitoring.json"
  while [ "$(count Enforcing)" -lt "$N" ]; do sleep 2; [ "$(date +%s)" -lt $((ENFORCE + 600)) ] || break; done
  ALL_ENF=$(date +%s.%N)
  HWM_ENF=$(awk '/VmHWM/{print $2}' "/proc/$CPID/status")
  curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" > "$D/counters-enforcing.json"
  sleep 5  # let the last status writes of the transition land
  kubectl get segpol -n "$NS" -o json > "$D/policies-enforcing.json"
  curl -s -X DELETE "http://127.0.0.1:$NSX_PORT/admin/counters" >/dev/null || curl -s -X POST "http://127.0.0.1:$NSX_PORT/admin/counters/reset" >/dev/null
  echo "[$V] waiting one resync period (${RESYNC}s + 15s) with nothing changed"
  sleep $((RESYNC + 15))
  curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" > "$D/counters-resync.json"
  kubectl get segpol -n "$NS" -o json > "$D/policies-after-resync.json"
  RSS=$(awk '/VmHWM/{print $2}' "/proc/$CPID/status")
  CPU=$(awk '{printf "%.1f", ($14+$15)/100}' "/proc/$CPID/stat")
  # A wrapper (MICROSEG_BENCH_WRAP) leaves its child running when it is killed: the child first.
  pkill -P "$CPID" 2>/dev/null || true
  kill "$CPID" "$SIM" 2>/dev/null || true; wait "$CPID" "$SIM" 2>/dev/null || true
  printf '%s\n' "$APPLY_START" "$APPLY_DONE" "$ALL_MON" "$ALL_ENF" "$(at "$ENFORCE")" "$RSS" "$CPU" "$HWM_MON" "$HWM_ENF" > "$D/times"
}

for v in $VARIANTS; do
  case "$v" in
    cache) variant cache "" ;;
    baseline) variant baseline "--nsx-cache=false --nsx-batch-window=0s --reconcile-concurrency=16 --transition-lead=0s" ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
done

python3 - "$N" "$WORK" $VARIANTS <<'PY'
import json, sys, datetime
n, work, variants = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def ts(s): return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
def total(c, pred=lambda k: True): return sum(v["total"] for k,v in c.items() if pred(k))
rows = {}
for v in variants:
    d = f"{work}/{v}"
    load = lambda f: json.load(open(f"{d}/{f}"))
    a0,a1,mon,enf,enforce_at,rss,cpu,hwm_mon,hwm_enf = open(f"{d}/times").read().split()
    a0,a1,mon,enf = map(float,(a0,a1,mon,enf))
    cm, ce, cr = load("counters-monitoring.json"), load("counters-enforcing.json"), load("counters-resync.json")
    late=[]
    for p in load("policies-enforcing.json")["items"]:
        for h in (p.get("status") or {}).get("history", []):
            if h["phase"]=="Enforcing":
                late.append(ts(h["at"])-ts(enforce_at))
    late.sort()
    # When each DROP landed in NSX: the controller's "Applied NSX changes" line of the write
    # that turned the policy's catch-all to DROP (the write returned).
    import re
    landed = {}
    pat = re.compile(r'^(\S+Z) .*reconcile\{policy=[^/]+/(app-\d+)\}.*Applied NSX changes.*catchall_in (\(DROP|\([^)]*\) to DROP)')
    for line in open(f"{d}/controller.log", errors="replace"):
        m = pat.search(re.sub(r'\x1b\[[0-9;]*m', '', line))
        if m and m.group(2) not in landed:
            t = datetime.datetime.strptime(m.group(1)[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()
            landed[m.group(2)] = t - ts(enforce_at)
    drop = sorted(landed.values())
    before = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in load("policies-enforcing.json")["items"]}
    after = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in load("policies-after-resync.json")["items"]}
    moved = sum(1 for k in after if before.get(k) != after[k])
    # When the RSS peaked, from the samples (seconds from enforceAt).
    samples = [tuple(map(float, l.split())) for l in open(f"{d}/rss.tsv") if len(l.split()) == 3]
    peak = max(samples, key=lambda x: x[1]) if samples else (float("nan"),) * 3
    peak_at = peak[0] - ts(enforce_at)
    rows[v] = {
        "kubectl apply of all policies (s)": (f"{a1-a0:.1f}", ""),
        "apply returned -> all Monitoring and Synced (s)": (f"{max(mon-a1, 0):.1f}", "<= 15"),
        "NSX calls per application to Monitoring": (f"{total(cm)/n:.2f}", "<= 0.1"),
        "  of which PATCH /infra": (f"{total(cm, lambda k: k.startswith('PATCH'))/n:.2f}", ""),
        "  of which GET": (f"{total(cm, lambda k: k.startswith('GET'))/n:.2f}", ""),
        "NSX calls per application Monitoring -> Enforcing": (f"{(total(ce)-total(cm))/n:.2f}", ""),
        "flip decided: lateness first/median/last (s)": (f"{late[0]:.1f}/{late[len(late)//2]:.1f}/{late[-1]:.1f}" if late else "n/a", ""),
        "DROP written in NSX: lateness first/median/last (s)": (f"{drop[0]:.1f}/{drop[len(drop)//2]:.1f}/{drop[-1]:.1f}" if len(drop) == n else f"{len(drop)} of {n}", "<= 1 / 5 (median/last)"),
        "resync, nothing changed: NSX writes": (str(total(cr, lambda k: k.startswith('PATCH'))), "0"),
        "resync, nothing changed: NSX calls in total": (str(total(cr)), "<= 10"),
        "resync, nothing changed: status writes": (str(moved), "0"),
        "controller peak RSS (MiB)": (f"{int(rss)/1024:.0f}", "<= 150"),
        "  peak by all Monitoring / all Enforcing (MiB)": (f"{int(hwm_mon)/1024:.0f}/{int(hwm_enf)/1024:.0f}", ""),
        "  RSS peak sampled at, from enforceAt (s)": (f"{peak_at:+.0f}", ""),
        "  of the sampled peak, in transparent huge pages (MiB)": (f"{peak[2]/1024:.0f}", ""),
        "controller CPU (s)": (cpu, ""),
    }
    print(f"[{v}] NSX calls to Monitoring: " + ", ".join(f"{k}={c['total']}" for k,c in sorted(cm.items())))
    print(f"[{v}] NSX calls during the resync: " + (", ".join(f"{k}={c['total']}" for k,c in sorted(cr.items())) or "none"))
print(f"\npolicies: {n} x 10 rules; NSX simulator limit 100 req/s; client 95 req/s, 20 concurrent; resync 60 s")
w = max(len(k) for k in next(iter(rows.values())))
print(f"{'':{w}}  " + "  ".join(f"{v:>14}" for v in variants) + "  target (microseg)")
for k in next(iter(rows.values())):
    print(f"{k:{w}}  " + "  ".join(f"{rows[v][k][0]:>14}" for v in variants) + f"  {rows[variants[0]][k][1]}")
PY
