#!/usr/bin/env bash
# Installs what the notification tests need outside cargo: Python's aiosmtpd in a venv at
# .tmp/venv (idempotent; safe to run on every CI run), and checks for openssl (test certificates).
# tests/notify_smtp.rs, notify_webhook.rs and notify_secrets.rs use
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
