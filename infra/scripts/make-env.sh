#!/usr/bin/env bash
# Create .env from .env.example with a fresh random value for every `change-me`, once.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f .env ] && exit 0
while IFS= read -r line; do
    if [[ "$line" == *change-me* ]]; then
        line="${line//change-me/$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}"
    fi
    printf '%s\n' "$line"
done <.env.example >.env
chmod 600 .env
echo "created .env with random passwords (from .env.example)"
