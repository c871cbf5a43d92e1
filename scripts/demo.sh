#!/usr/bin/env bash
# The README's main command: the whole rollout of the example wave, compressed into about three
# minutes, on a real kube-apiserver (tests/control-plane), the NSX Manager simulator and a real
# SMTP server, all on 127.0.0.1. Shows `kubectl get segpol -w`-style progress and what NSX and
# the owners' mailboxes hold at the end. Ctrl-C stops everything it started.
#
#   bash scripts/demo.sh            # full run (first run builds the control plane: ~8 min)
#   DEMO_KEEP=1 bash scripts/demo.sh  # leave everything running at the end (Ctrl-C to stop)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
ROOT="$PWD"
WORK="$ROOT/.tmp/demo"
rm -rf "$WORK"; mkdir -p "$WORK/mail" "$WORK/nsx-credentials" "$WORK/notify"
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
bash tests/support/setup.sh >/dev/null

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

say "starting the microseg controller"
HTTP_PORT=$(free_port)
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(24))' >"$WORK/dashboard-token")
RUST_LOG=info,microseg=info "$MICROSEG" controller --cluster demo \
  --nsx-url "http://127.0.0.1:$NSX_PORT" --nsx-auth session --nsx-credentials-dir "$WORK/nsx-credentials" \
  --notify-config-dir "$WORK/notify" --reminder-before 20s --resync 30s \
  --dashboard-token-file "$WORK/dashboard-token" \
  --http-addr "127.0.0.1:$HTTP_PORT" >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
echo "health and metrics: http://127.0.0.1:$HTTP_PORT/readyz  http://127.0.0.1:$HTTP_PORT/metrics"
echo "dashboard: http://127.0.0.1:$HTTP_PORT/ui/ (sign in with the token in $WORK/dashboard-token)"

# The example wave with its schedule compressed: seconds instead of weeks.
at() { date -u -d "@$(( $(date +%s) + $1 ))" +%Y-%m-%dT%H:%M:%SZ; }
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
    requireApproval: true
YAML
# The orders team's chat webhook points at the local receiver (the example's URL is not
# reachable from here; an unreachable owner would hold enforcement, which is the point).
sed "s#https://chat.example.com/hooks/orders#http://127.0.0.1:$HOOK_PORT/hooks/orders#" deploy/examples/11-app.yaml > "$WORK/11-app.yaml"
kubectl apply -f deploy/examples/10-web.yaml -f "$WORK/11-app.yaml" -f deploy/examples/12-db.yaml -f deploy/examples/20-dns.yaml >/dev/null
say "wave-1: notice $T1, monitor $T2, enforce $T3, clean-up $T4; wave-critical (DNS, needs approval): enforce $C3"
echo "watching: kubectl get segmentationpolicies -n shop -w"
# Not a pipeline: $! must be kubectl's pid, or the clean-up's `wait` waits for it forever.
kubectl get segmentationpolicies -n shop -w --output-watch-events=false 2>/dev/null > >(tee "$WORK/watch.log") &
PIDS+=($!)

approved=0
deadline=$(( $(date +%s) + 240 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 2
  phases=$(kubectl get segpol -n shop -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}')
  if [ "$approved" = 0 ] && kubectl get segpol dns -n shop -o jsonpath='{.status.phase}' | grep -q Held; then
    echo "-- DNS is Held (approval required): the change board approves it"
    kubectl annotate segpol dns -n shop microseg.io/approved-by=change-board >/dev/null
    approved=1
  fi
  [ "$(echo "$phases" | grep -c Completed)" = 4 ] && break
done

say "final state"
kubectl get segpol -n shop
kubectl get ew -n shop
say "conditions of shop/dns"
kubectl get segpol dns -n shop -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
say "history of shop/web"
kubectl get segpol web -n shop -o jsonpath='{range .status.history[*]}{.at} {.phase} ({.reason}){"\n"}{end}'
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
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  say "everything keeps running (KUBECONFIG=$KUBECONFIG); Ctrl-C to stop"
  wait
fi
