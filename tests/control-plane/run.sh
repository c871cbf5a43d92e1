#!/usr/bin/env bash
# Build, start and stop the test control plane (kube-apiserver + embedded etcd
# in one Go process). See README.md.
#
#   run.sh build                   build bin/control-plane if missing or stale
#   run.sh start KUBECONFIG_PATH   build if needed, start in the background, wait
#                                  for READY, write KUBECONFIG_PATH.pid, print URL
#   run.sh stop KUBECONFIG_PATH    SIGTERM, wait, then SIGKILL
#
# Environment:
#   CONTROL_PLANE_TIMEOUT    seconds to wait for READY (default 120)
#   CONTROL_PLANE_WATCH_PID  the server exits when this process dies
#                            (default: the caller of run.sh; 0 = never)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$HERE/bin/control-plane"

die() { echo "run.sh: $*" >&2; exit 1; }

find_go() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go
  else
    die "Go toolchain not found (need go on PATH or /usr/local/go/bin/go)"
  fi
}

# True when the binary is missing or older than any source file.
stale() {
  [ -x "$BIN" ] || return 0
  [ -n "$(find "$HERE" -maxdepth 1 \( -name '*.go' -o -name go.mod -o -name go.sum -o -name run.sh \) -newer "$BIN" -print -quit)" ]
}

build() {
  mkdir -p "$HERE/bin"
  stale || return 0
  # Serialise concurrent builds (e.g. two test runs starting at once). The
  # lock fd lives only in this subshell, so the server never inherits it.
  (
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    stale || exit 0 # someone else built it while we waited

    go="$(find_go)"
    k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$HERE/go.mod")"
    minor="$(echo "$k8s_version" | cut -d. -f2)"
    echo "run.sh: building control-plane (Kubernetes $k8s_version; the first build takes minutes)" >&2
    # Stamp the Kubernetes version into the binary so /version reports it.
    # -trimpath=false (even if GOFLAGS says otherwise): StartTestServer
    # resolves its own source directory at runtime and fails on trimmed paths.
    pkg=k8s.io/component-base/version
    cd "$HERE"
    "$go" build -trimpath=false \
      -ldflags "-X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
      -o "$BIN.tmp" .
    mv -f "$BIN.tmp" "$BIN"
  ) 9>"$HERE/bin/.build.lock"
}

# alive PID: the process exists and is not a zombie.
alive() {
  kill -0 "$1" 2>/dev/null && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null
}

# pid_of KUBECONFIG: the pid from KUBECONFIG.pid if that process is still our
# control plane, else nothing.
pid_of() {
  local pidfile="$1.pid" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if [ -n "$pid" ] && alive "$pid" && grep -qa control-plane "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

start() {
  local kubeconfig="$1"
  build
  mkdir -p "$(dirname "$kubeconfig")"
  kubeconfig="$(cd "$(dirname "$kubeconfig")" && pwd)/$(basename "$kubeconfig")"
  [ -z "$(pid_of "$kubeconfig")" ] || die "already running for $kubeconfig (pid $(pid_of "$kubeconfig"))"

  local out="$kubeconfig.out" log="$kubeconfig.log" timeout="${CONTROL_PLANE_TIMEOUT:-120}"
  local watch="${CONTROL_PLANE_WATCH_PID:-$PPID}"
  rm -f "$kubeconfig" "$out" "$kubeconfig.pid"
  "$BIN" --kubeconfig "$kubeconfig" --watch-pid "$watch" >"$out" 2>"$log" </dev/null &
  local pid=$!
  echo "$pid" >"$kubeconfig.pid"

  local deadline=$((SECONDS + timeout)) line
  while :; do
    line="$(grep -m1 '^READY ' "$out" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      echo "$line" | awk '{ print $3 }'
      return 0
    fi
    if ! alive "$pid"; then
      tail -n 30 "$log" >&2 || true
      rm -f "$kubeconfig.pid"
      die "control plane exited before READY (log: $log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$log" >&2 || true
      stop "$kubeconfig" || true
      die "control plane not READY after ${timeout}s (log: $log)"
    fi
    sleep 0.2
  done
}

stop() {
  local kubeconfig="$1" pid
  pid="$(pid_of "$kubeconfig")"
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do # up to 30 s for a clean shutdown
      alive "$pid" || break
      sleep 0.2
    done
    if alive "$pid"; then
      echo "run.sh: pid $pid ignored SIGTERM for 30s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$kubeconfig.pid" "$kubeconfig.out" "$kubeconfig"
}

case "${1:-}" in
  build) build ;;
  start) [ $# -eq 2 ] || die "usage: run.sh start KUBECONFIG_PATH"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: run.sh stop KUBECONFIG_PATH"; stop "$2" ;;
  *) die "usage: run.sh build | start KUBECONFIG_PATH | stop KUBECONFIG_PATH" ;;
esac
