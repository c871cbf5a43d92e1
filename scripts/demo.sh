#!/usr/bin/env bash
# The README's main command: the whole rollout of the example wave, compressed into about two
# minutes, on a real kube-apiserver (tests/control-plane), the NSX Manager simulator and a real
# SMTP server, all on 127.0.0.1. Enforcement happens on evidence, as in production: the demo
# generates DFW packet-log lines with the simulator (decided by the rules microseg wrote) and
# sends them to the controller's ingestion endpoint; one unmatched flow holds the web tier until
# the demo acknowledges it in the dashboard API and the quiet period has passed; DNS also waits
# for the change board's approval of its generation. Prints each step, then what NSX, the
# policies' status and the owners' mailboxes hold at the end. Ctrl-C stops everything it started.
#
#   bash scripts/demo.sh            # full run (first run builds the control plane: ~8 min)
#   DEMO_KEEP=1 bash scripts/demo.sh  # leave everything running at the end (Ctrl-C to stop)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
ROOT="$PWD"
WORK="$ROOT/.tmp/demo"
rm -rf "$WORK"; mkdir -p "$WORK/mail" "$WORK/nsx-credentials" "$WORK/notify" "$WORK/manifests"
PIDS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  bash "$ROOT/tests/control-plane/run.sh" stop "$WORK/kubeconfig" >/dev/null 2>&1
  echo "demo: stopped everything it started (logs in $WORK)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building microseg and the test control plane (the first control-plane build takes ~8 minutes)"
cargo build --quiet --bin microseg
MICROSEG="$ROOT/target/debug/microseg"
bash tests/control-plane/run.sh build
# The SMTP server (tests/support/smtp_sink.py) needs aiosmtpd; tests/support/setup.sh installs the
# same venv plus what only the tests need (Chromium, playwright-core).
if ! .tmp/venv/bin/python -c 'import aiosmtpd' 2>/dev/null; then
  [ -x .tmp/venv/bin/python ] || python3 -m venv .tmp/venv
  .tmp/venv/bin/python -m pip install --quiet --disable-pip-version-check 'aiosmtpd>=1.4,<2'
fi

say "starting a real kube-apiserver (Kubernetes $(awk '$1=="k8s.io/kubernetes"{print $2}' tests/control-plane/go.mod)) on 127.0.0.1"
CONTROL_PLANE_WATCH_PID=$$ bash tests/control-plane/run.sh start "$WORK/kubeconfig"
export KUBECONFIG="$WORK/kubeconfig"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/segmentationpolicies.microseg.io crd/enforcementwindows.microseg.io >/dev/null

say "starting the NSX Manager simulator and an SMTP server on 127.0.0.1"
NSX_PORT=$(free_port)
printf 'admin' > "$WORK/nsx-credentials/username"
printf 'demo-password-%s' "$RANDOM$RANDOM" > "$WORK/nsx-credentials/password"
"$MICROSEG" nsx-sim --listen "127.0.0.1:$NSX_PORT" --plain-http \
  --password-file "$WORK/nsx-credentials/password" --vms deploy/nsxsim/example-vms.json >"$WORK/nsx-sim.log" 2>&1 &
PIDS+=($!)
"$ROOT/.tmp/venv/bin/python" tests/support/smtp_sink.py "$WORK/mail" >"$WORK/smtp.out" 2>"$WORK/smtp.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '^PORT ' "$WORK/smtp.out" 2>/dev/null && break; sleep 0.1; done
SMTP_PORT=$(awk '/^PORT /{print $2}' "$WORK/smtp.out")
printf '127.0.0.1' > "$WORK/notify/smtp-host"
printf '%s' "$SMTP_PORT" > "$WORK/notify/smtp-port"
printf 'insecure-plaintext' > "$WORK/notify/smtp-tls"
printf 'microseg <microseg@example.com>' > "$WORK/notify/smtp-from"
printf 'the network security team (netsec@example.com)' > "$WORK/notify/notify-contact"
# The demo's chat receiver is on loopback over http: webhooks there are refused unless allowed.
printf '127.0.0.0/8' > "$WORK/notify/webhook-allowed-networks"
printf 'true' > "$WORK/notify/webhook-insecure-allow-http"
# A chat webhook receiver for owners who want notices in a channel (writes each POST to a file).
HOOK_PORT=$(free_port)
python3 - "$HOOK_PORT" "$WORK/hooks" >"$WORK/hooks.log" 2>&1 <<'PY' &
import http.server, os, sys, json
port, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
class H(http.server.BaseHTTPRequestHandler):
    n = 0
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        H.n += 1
        with open(os.path.join(out, f"{H.n:04}.json"), "wb") as f:
            f.write(body)
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)
echo "NSX simulator: http://127.0.0.1:$NSX_PORT   SMTP: 127.0.0.1:$SMTP_PORT   chat webhook: 127.0.0.1:$HOOK_PORT"
# An NSX object that exists before microseg: the monitoring-servers group that app's rules name
# (DNS-UDP is one of NSX's default services). microseg refers to them and never changes them.
NSX_PASS=$(cat "$WORK/nsx-credentials/password")
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$NSX_PORT/api/v1/node/version" -u "admin:$NSX_PASS" && break; sleep 0.1; done
curl -sf -u "admin:$NSX_PASS" -X PATCH -H 'Content-Type: application/json' \
  "http://127.0.0.1:$NSX_PORT/policy/api/v1/infra/domains/default/groups/monitoring-servers" \
  -d '{"resource_type":"Group","id":"monitoring-servers","display_name":"monitoring servers","expression":[{"resource_type":"IPAddressExpression","ip_addresses":["10.50.0.0/24"]}]}'

say "starting the microseg controller (DFW log ingestion and the dashboard on)"
HTTP_PORT=$(free_port); INGEST_PORT=$(free_port); DASHBOARD_PORT=$(free_port)
SYSLOG_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(24))' >"$WORK/dashboard-token")
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(24))' >"$WORK/ingest-token")
RUST_LOG=info,microseg=info "$MICROSEG" controller --cluster demo \
  --nsx-url "http://127.0.0.1:$NSX_PORT" --nsx-insecure-allow-http --nsx-auth session --nsx-credentials-dir "$WORK/nsx-credentials" \
  --notify-config-dir "$WORK/notify" --reminder-before 20s --resync 30s \
  --dashboard-token-file "$WORK/dashboard-token" --ingest-token-file "$WORK/ingest-token" \
  --syslog-udp-addr "127.0.0.1:$SYSLOG_PORT" \
  --http-addr "127.0.0.1:$HTTP_PORT" --ingest-addr "127.0.0.1:$INGEST_PORT" \
  --dashboard-addr "127.0.0.1:$DASHBOARD_PORT" --dashboard-insecure-cookie >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
HEALTH="http://127.0.0.1:$HTTP_PORT"
API="http://127.0.0.1:$DASHBOARD_PORT"
INGEST="http://127.0.0.1:$INGEST_PORT"
echo "health and metrics: $HEALTH/readyz  $HEALTH/metrics"
echo "dashboard: $API/ui/ (sign in with the token in $WORK/dashboard-token)"
echo "DFW log ingestion: POST $INGEST/ingest/lines and $INGEST/ingest/loginsight (bearer token in $WORK/ingest-token), syslog udp://127.0.0.1:$SYSLOG_PORT"

# The DFW log source. In production ESXi hosts send their dfwpktlogs (syslog, Log Insight or
# /ingest/lines); here the simulator decides each flow with the rules microseg wrote to it
# (POST /admin/flow answers the DFW lines the hosts would log) and the demo posts them.
cat >"$WORK/dfw.py" <<'PY'
import json, os, socket, sys, time, urllib.error, urllib.request
NSX, INGEST = os.environ["DEMO_NSX"], os.environ["DEMO_INGEST"]
WEBHOOK, SYSLOG = os.environ["DEMO_WEBHOOK"], int(os.environ["DEMO_SYSLOG_PORT"])
TOKEN = open(os.environ["DEMO_INGEST_TOKEN_FILE"]).read().strip()
FIELDS = ("src_ip", "dst_ip", "protocol", "dst_port")

def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return {"error": f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}"}

def lines(flow):
    body = json.dumps({k: flow[k] for k in FIELDS}).encode()
    return post(NSX + "/admin/flow", body, {"Content-Type": "application/json"}).get("lines", [])

def ingest(batch, key):
    return post(INGEST, ("\n".join(batch) + "\n").encode(), {
        "Authorization": "Bearer " + TOKEN, "Content-Type": "text/plain", "Idempotency-Key": key})

def loginsight(batch):
    # What a Log Insight alert webhook posts (legacy payload, reference section 10).
    alert = {"AlertType": 1, "AlertName": "NSX DFW - monitor mode", "SearchPeriod": 300000,
             "HitCount": 0.0, "HitOperator": 2, "HasMoreResults": False,
             "Url": "https://loginsight.example/s/demo", "EditUrl": None, "Info": "", "Recommendation": None,
             "NumHits": len(batch),
             "messages": [{"text": l, "timestamp": int(time.time() * 1000), "fields": []} for l in batch]}
    return post(WEBHOOK, json.dumps(alert).encode(), {
        "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})

def syslog(batch):
    # What an ESXi host sends: RFC 3164 over UDP, program dfwpktlogs (no answer on syslog).
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for l in batch:
        ts, rest = l.split(" ", 1)
        s.sendto(f"<182>{ts} esx01.shop.example dfwpktlogs: {rest}".encode(), ("127.0.0.1", SYSLOG))
    return {"syslog": len(batch)}

if sys.argv[1] == "loop":
    # Everyday traffic, every 2 seconds, until stopped, by turns the way ESXi hosts send it
    # (syslog), the way a Log Insight alert forwards it (webhook), and as plain lines.
    flows, n = json.load(open(sys.argv[2])), 0
    routes = [("lines", lambda b: ingest(b, f"demo-{os.getpid()}-{n}")), ("loginsight", loginsight), ("syslog", syslog)]
    while True:
        n += 1
        route, send = routes[n % 3]
        try:
            batch = [line for f in flows for line in lines(f)]
            answer = send(batch) if batch else {"lines": 0}
        except OSError as e:  # the controller is still starting
            answer = {"error": str(e)}
        print(time.strftime("%H:%M:%S"), route, json.dumps(answer), flush=True)
        time.sleep(2)
else:
    # One flow: print its lines and what the controller made of them.
    src, dst, proto, port = sys.argv[2:6]
    batch = lines({"src_ip": src, "dst_ip": dst, "protocol": proto, "dst_port": int(port)})
    for line in batch:
        print("   DFW:", line)
    answer = ingest(batch, f"demo-once-{time.time_ns()}") if batch else {"error": "no DFW line"}
    print("   ingestion:", json.dumps({k: v for k, v in answer.items() if k != "errors"}))
    sys.exit(0 if batch and answer.get("unmatched") else 1)
PY
# Everyday traffic of the shop (addresses of deploy/nsxsim/example-vms.json).
cat >"$WORK/traffic.json" <<'JSON'
[
  {"what": "bastion -> web SSH",     "src_ip": "10.0.0.10",    "dst_ip": "10.1.0.12",  "protocol": "TCP", "dst_port": 22},
  {"what": "customer -> web HTTPS",  "src_ip": "198.51.100.20", "dst_ip": "10.1.0.11", "protocol": "TCP", "dst_port": 443},
  {"what": "web -> app",             "src_ip": "10.1.0.11",    "dst_ip": "10.1.1.21",  "protocol": "TCP", "dst_port": 8443},
  {"what": "app -> db",              "src_ip": "10.1.1.22",    "dst_ip": "10.20.30.5", "protocol": "TCP", "dst_port": 5432},
  {"what": "backup -> db",           "src_ip": "10.99.0.7",    "dst_ip": "10.20.30.5", "protocol": "TCP", "dst_port": 10010},
  {"what": "web -> dns",             "src_ip": "10.1.0.12",    "dst_ip": "10.0.0.53",  "protocol": "UDP", "dst_port": 53},
  {"what": "app -> dns",             "src_ip": "10.1.1.21",    "dst_ip": "10.0.0.54",  "protocol": "UDP", "dst_port": 53}
]
JSON
export DEMO_NSX="http://127.0.0.1:$NSX_PORT" DEMO_INGEST="$INGEST/ingest/lines" DEMO_INGEST_TOKEN_FILE="$WORK/ingest-token"
export DEMO_WEBHOOK="$INGEST/ingest/loginsight" DEMO_SYSLOG_PORT="$SYSLOG_PORT"

# The example wave with its schedule compressed: seconds instead of weeks. The evidence gates
# are set explicitly: their defaults (quiet period 72h, log silence 24h) would hold a
# two-minute demo for days.
BASE=$(date +%s)
at() { date -u -d "@$(( BASE + $1 ))" +%Y-%m-%dT%H:%M:%SZ; }
T1=$(at 5); T2=$(at 10); T3=$(at 50); T4=$(at 90)
C1=$(at 5); C2=$(at 20); C3=$(at 65)
kubectl apply -f deploy/examples/00-namespace.yaml >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {name: wave-1, namespace: shop}
spec:
  notifyAt: "$T1"
  monitorFrom: "$T2"
  enforceAt: "$T3"
  cleanupAt: "$T4"
  minimumNotice: 40s
  postEnforcementMonitoring: 30s
  gates:
    quietPeriod: 15s      # no unmatched flow for 15s (default 72h)
    maxLogSilence: 60s    # DFW lines of the application within the last minute (default 24h)
    maxOpenAlerts: 0      # every unmatched flow handled first (the default)
    rollback:             # back to PASS when 3 unmatched flows are dropped within 2 minutes
      droppedFlows: 3
      period: 2m
---
apiVersion: microseg.io/v1alpha1
kind: EnforcementWindow
metadata: {name: wave-critical, namespace: shop}
spec:
  notifyAt: "$C1"
  monitorFrom: "$C2"
  enforceAt: "$C3"
  minimumNotice: 45s
  postEnforcementMonitoring: 30s
  gates:
    quietPeriod: 15s
    maxLogSilence: 60s
    requireApproval: true
YAML
# The orders team's chat webhook points at the local receiver (the example's URL is not
# reachable from here; an unreachable owner would hold enforcement, which is the point).
sed "s#https://chat.example.com/hooks/orders#http://127.0.0.1:$HOOK_PORT/hooks/orders#" deploy/examples/11-app.yaml > "$WORK/manifests/11-app.yaml"
# Evidence needs DFW lines of the application: lines on its catch-all (unmatched flows) or on
# its logged rules. Every example logs one rule that carries everyday traffic.
kubectl apply -f deploy/examples/10-web.yaml -f "$WORK/manifests/11-app.yaml" -f deploy/examples/12-db.yaml \
  -f deploy/examples/20-dns.yaml >/dev/null
say "wave-1 (web, app, db): notice $T1, monitor $T2, enforce $T3, clean-up $T4"
echo "wave-critical (dns, needs approval): notice $C1, monitor $C2, enforce $C3"
echo "gates: DFW lines of the application itself (Blind), no open alert (OpenAlerts), 15s without an unmatched flow (QuietPeriod)"
echo "each application logs one everyday rule (logged: true): without a logged rule a complete policy yields no DFW line"

say "monitor mode: the simulator's DFW lines every 2s, by turns over syslog (as ESXi sends them), the Log Insight webhook and /ingest/lines (log: $WORK/feed.log)"
python3 "$WORK/dfw.py" loop "$WORK/traffic.json" >"$WORK/feed.log" 2>&1 &
PIDS+=($!)
python3 -c 'import json, sys
for x in json.load(open(sys.argv[1])):
    print("  {what:22} {src_ip} -> {dst_ip} {protocol}/{dst_port}".format(**x))' "$WORK/traffic.json"
echo "  (the DFW logs a flow only when the rule it matches is logged: HTTPS to web and app -> db leave no line)"

# One line per policy: name|phase|generation|healthy|unmatched|open|gate reason|gate message.
cat >"$WORK/state.py" <<'PY'
import json, sys
for p in json.load(sys.stdin)["items"]:
    s, m = p.get("status", {}), p.get("status", {}).get("monitor", {})
    gate = next((c for c in s.get("conditions", []) if c["type"] == "EnforcementGate"), {})
    print("|".join(str(x).replace("|", "/") for x in (
        p["metadata"]["name"], s.get("phase", "-"), p["metadata"].get("generation", 0),
        m.get("healthyTotal", 0), m.get("unmatchedTotal", 0), m.get("openAlerts", 0),
        gate.get("reason", "-"), gate.get("message", ""))))
PY
ts() { printf '[+%3ds]' $(( $(date +%s) - BASE )); }
dash() { curl -sf -H "Authorization: Bearer $(cat "$WORK/dashboard-token")" "$@"; }
UNMATCHED_SRC=10.50.0.7; UNMATCHED_DST=10.1.0.11; UNMATCHED_PORT=9100
DROPPED_SRC=10.1.1.22; DROPPED_DST=10.20.30.5; DROPPED_PORT=6379
declare -A last evidence enforced
injected=0; acknowledged=0; approved=0; completed=0; dropped=0; fixed=0
echo "dashboard: $API/ui/ (token in $WORK/dashboard-token)"
deadline=$(( BASE + 240 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 2
  state=$(kubectl get segpol -n shop -o json | python3 "$WORK/state.py") || continue
  completed=0
  while IFS='|' read -r name phase gen healthy unmatched open reason message; do
    [ "$phase" = Completed ] && completed=$((completed + 1))
    if [ "${last[$name]:-}" != "$phase/$reason" ]; then
      last[$name]="$phase/$reason"
      printf '%s %-4s %-10s unmatched=%s open=%s  %s: %s\n' "$(ts)" "$name" "$phase" "$unmatched" "$open" "$reason" "$message"
      [ "$phase" = Enforcing ] && enforced[$name]="$reason: $message"
    fi
    if [ -z "${evidence[$name]:-}" ] && [ "$healthy" -gt 0 ]; then
      evidence[$name]=1
      echo "$(ts) -- $name: DFW lines on its own rules arrive ($healthy so far): monitoring sees it (evidence)"
    fi
    case "$name/$phase" in
      web/Monitoring)
        # One flow nobody wrote a rule for, shortly before enforcement is due.
        if [ "$injected" = 0 ] && [ "$(date +%s)" -ge $(( BASE + 42 )) ]; then
          echo "$(ts) -- web: unmatched flow $UNMATCHED_SRC -> $UNMATCHED_DST TCP/$UNMATCHED_PORT (a metrics scrape no rule allows) reaches web's catch-all"
          # (retried at the next look if NSX does not hold web's catch-all yet)
          python3 "$WORK/dfw.py" once "$UNMATCHED_SRC" "$UNMATCHED_DST" TCP "$UNMATCHED_PORT" && injected=1
        fi ;;
      web/Held)
        if [ "$injected" = 1 ] && [ "$acknowledged" = 0 ] && [ "$open" -gt 0 ]; then
          # The owner looks at the alert queue and acknowledges the flow with a comment.
          echo "$(ts) -- web is held by an open alert; the queue at $API/ui/alerts shows:"
          dash "$API/api/v1/alerts?namespace=shop&state=open" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["alerts"]:
    print("     ", json.dumps({k: a.get(k) for k in ("policy", "source", "destination", "protocol", "port", "direction", "action", "count", "lastSeen")}))' || true
          ids=$(dash "$API/api/v1/alerts?namespace=shop&state=open" | python3 -c '
import json, sys
print(",".join(json.dumps(a["id"]) for a in json.load(sys.stdin)["alerts"] if a["policy"] == "web"))')
          body="{\"namespace\":\"shop\",\"name\":\"web\",\"flowIds\":[$ids],\"by\":\"demo\",\"comment\":\"metrics scrape by the monitoring team: rule metrics-scrape follows in the next change\"}"
          if answer=$(dash -X POST -H 'Content-Type: application/json' "$API/api/v1/alerts/acknowledge" -d "$body"); then
            echo "$(ts) -- web: unmatched flow $UNMATCHED_SRC -> $UNMATCHED_DST TCP/$UNMATCHED_PORT acknowledged by the demo (dashboard API: $answer); the quiet period still runs"
            acknowledged=1
          fi
        fi ;;
      db/Enforcing)
        # A flow nobody wrote a rule for (app -> db on a cache port), now dropped: three drops
        # within two minutes cross the window's rollback threshold.
        if [ "$dropped" -lt 3 ]; then
          echo "$(ts) -- db: $DROPPED_SRC -> $DROPPED_DST TCP/$DROPPED_PORT (a cache the app team forgot) is DROPPED by the catch-all, three times"
          for _ in 1 2 3; do python3 "$WORK/dfw.py" once "$DROPPED_SRC" "$DROPPED_DST" TCP "$DROPPED_PORT" && dropped=$((dropped + 1)); done
        fi ;;
      db/RolledBack)
        if [ "$fixed" = 0 ]; then
          echo "$(ts) -- db: rolled back to PASS (the owner got a RolledBack notice); the team adds the missing rule and acknowledges the alert"
          kubectl patch segpol db -n shop --type json -p "[{\"op\":\"add\",\"path\":\"/spec/rules/-\",\"value\":{\"name\":\"cache-from-app\",\"direction\":\"Inbound\",\"peers\":[{\"application\":{\"name\":\"app\"}}],\"ports\":[{\"protocol\":\"TCP\",\"port\":$DROPPED_PORT}]}}]" >/dev/null
          ids=$(dash "$API/api/v1/alerts?namespace=shop&state=open" | python3 -c '
import json, sys
print(",".join(json.dumps(a["id"]) for a in json.load(sys.stdin)["alerts"] if a["policy"] == "db"))')
          dash -X POST -H 'Content-Type: application/json' "$API/api/v1/alerts/acknowledge" \
            -d "{\"namespace\":\"shop\",\"name\":\"db\",\"flowIds\":[$ids],\"by\":\"demo\",\"comment\":\"rule cache-from-app added\"}" >/dev/null || true
          echo "$(ts) -- db: rule cache-from-app added (generation $(kubectl get segpol db -n shop -o jsonpath='{.metadata.generation}')); enforcement needs the gates again, the quiet period counted from the rollback"
          fixed=1
        fi ;;
      dns/Held)
        if [ "$approved" = 0 ] && [ "$reason" = ApprovalMissing ]; then
          echo "$(ts) -- dns: the change board approves generation $gen"
          kubectl annotate segpol dns -n shop --overwrite \
            microseg.io/approved-generation="$(kubectl get segpol dns -n shop -o jsonpath='{.metadata.generation}')" \
            microseg.io/approved-by=change-board >/dev/null
          approved=1
        fi ;;
    esac
  done <<<"$state"
  [ "$completed" = 4 ] && break
done

say "final state ($(( $(date +%s) - BASE ))s after the windows were applied)"
kubectl get segpol -n shop
kubectl get ew -n shop
say "evidence per application (status.monitor)"
kubectl get segpol -n shop -o custom-columns='NAME:.metadata.name,HEALTHY-LINES:.status.monitor.healthyTotal,UNMATCHED:.status.monitor.unmatchedTotal,OPEN-ALERTS:.status.monitor.openAlerts,LAST-LOG:.status.monitor.lastLogAt'
kubectl get segpol web -n shop -o jsonpath='{range .status.monitor.flows[*]}  web: {.source} -> {.destination} {.protocol}/{.port} x{.count}: acknowledged by {.acknowledged.by}: {.acknowledged.comment}{"\n"}{end}'
say "EnforcementGate of each application: when it turned to DROP, and now"
for name in app db dns web; do
  echo "  $name: ${enforced[$name]:-never enforced}"
done
kubectl get segpol -n shop -o jsonpath='{range .items[*]}  {.metadata.name}: {.status.conditions[?(@.type=="EnforcementGate")].reason}: {.status.conditions[?(@.type=="EnforcementGate")].message}{"\n"}{end}'
say "conditions of shop/dns"
kubectl get segpol dns -n shop -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
say "history of shop/web"
kubectl get segpol web -n shop -o jsonpath='{range .status.history[*]}{.at} {.phase} ({.reason}): {.message}{"\n"}{end}'
say "NSX: security policies and their rules (rule ids as in DFW logs)"
curl -s -u "admin:$NSX_PASS" "http://127.0.0.1:$NSX_PORT/policy/api/v1/infra/domains/default/security-policies" \
  | python3 -c 'import json,sys; [print(" ", p["id"]) for p in json.load(sys.stdin)["results"]]'
echo "  rule ids of shop/web: $(kubectl get segpol web -n shop -o jsonpath='{.status.nsx.ruleIds}')"
say "mail the owners received"
python3 - "$WORK/mail" <<'PY'
import json, os, sys
d = sys.argv[1]
for f in sorted(x for x in os.listdir(d) if x.endswith(".json")):
    m = json.load(open(os.path.join(d, f)))
    h = m.get("headers", {})
    print(f"  {', '.join(m.get('rcpt_tos', [])):24} {h.get('subject', '?')}")
PY
echo "  chat webhook posts: $(ls "$WORK/hooks" 2>/dev/null | wc -l)"
say "NSX calls made (simulator counters)"
curl -s "http://127.0.0.1:$NSX_PORT/admin/counters" | python3 -c 'import json,sys; c=json.load(sys.stdin); [print("  %5d %s" % (v["total"], k)) for k,v in sorted(c.items())]' || true
if [ "$completed" != 4 ]; then
  say "FAILED: not every application Completed within 4 minutes (controller log: $WORK/controller.log)"
  exit 1
fi
say "every application Completed, each on its own evidence"
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  say "everything keeps running (KUBECONFIG=$KUBECONFIG); Ctrl-C to stop"
  wait
fi
