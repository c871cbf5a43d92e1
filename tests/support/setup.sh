#!/usr/bin/env bash
# Installs what the tests need outside cargo (idempotent; safe to run on every CI run):
# - Python's aiosmtpd in a venv at .tmp/venv, and a check for openssl (test certificates);
# - for the dashboard's browser test (tests/it/e2e_dashboard.rs): Debian's chromium (apt-get, skipped
#   when /usr/bin/chromium exists) and playwright-core into tests/browser/node_modules (npm ci
#   from the committed package-lock.json; no browser download: Playwright drives /usr/bin/chromium).
# tests/it/notify_smtp.rs, notify_webhook.rs and notify_secrets.rs use
# .tmp/venv/bin/python (or $MICROSEG_TEST_PYTHON) to run tests/support/smtp_sink.py and
# https_sink.py; they fail (never skip) with a pointer to this script when it has not run.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.tmp/venv
python=${PYTHON:-python3}

command -v openssl >/dev/null || { echo "setup.sh: openssl is required for the SMTP TLS tests (apt-get install openssl)" >&2; exit 1; }
command -v "$python" >/dev/null || { echo "setup.sh: $python is required for the SMTP tests (apt-get install python3 python3-venv)" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
    mkdir -p .tmp
    "$python" -m venv "$venv" || { echo "setup.sh: could not create $venv (apt-get install python3-venv)" >&2; exit 1; }
fi

if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'aiosmtpd>=1.4,<2'
fi

"$venv/bin/python" -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__, "in '"$venv"'")'

# Dashboard browser test: headless Chromium and playwright-core.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup.sh: installing chromium (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "setup.sh: /usr/bin/chromium is required for tests/it/e2e_dashboard.rs (apt-get install chromium, as root)" >&2
        exit 1
    fi
fi
command -v npm >/dev/null || { echo "setup.sh: node and npm are required for tests/it/e2e_dashboard.rs (apt-get install nodejs npm)" >&2; exit 1; }
want=$(node -p 'require("./tests/browser/package.json").dependencies["playwright-core"]')
have=$(node -p 'try { require("./tests/browser/node_modules/playwright-core/package.json").version } catch (_) { "" }')
if [ "$want" != "$have" ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1); playwright-core $(node -p 'require("./tests/browser/node_modules/playwright-core/package.json").version')"
