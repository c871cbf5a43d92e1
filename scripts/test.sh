#!/usr/bin/env bash
# Runs every check and test of microseg. This is the README's test command; CI runs it too.
# On a fresh machine it installs what the tests need (first run: the control plane and Helm are
# built from the Go module proxy, about 10 minutes on 2 cores; later runs reuse Go's caches).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"

command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v go >/dev/null || { echo "go is required"; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl is required"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

HELM_VERSION=v3.22.0
mkdir -p .tmp/bin
if ! .tmp/bin/helm version --short 2>/dev/null | grep -q "${HELM_VERSION%.*}"; then
  echo "== installing Helm $HELM_VERSION into .tmp/bin (go install)"
  GOBIN="$PWD/.tmp/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
echo "== building the test control plane (tests/control-plane)"
time bash tests/control-plane/run.sh build
echo "== Go modules of the GitOps health test (tests/gitops-health: kstatus, gopher-lua)"
(cd tests/gitops-health && go mod download)
if [ -f tests/support/setup.sh ]; then
  echo "== test support (SMTP server)"
  bash tests/support/setup.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
