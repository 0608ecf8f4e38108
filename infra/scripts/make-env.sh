#!/usr/bin/env bash
# Create .env from .env.example once, with a fresh random value for every `change-me`, and
# link it into each level folder, where `docker compose` looks for it.
set -euo pipefail
cd "$(dirname "$0")/../.."
umask 077  # .env holds passwords: readable by its owner only, from the first byte
if [ ! -f .env ]; then
    while IFS= read -r line; do
        if [[ "$line" != \#* && "$line" == *change-me* ]]; then
            line="${line//change-me/$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}"
        fi
        printf '%s\n' "$line"
    done <.env.example >.env
    echo "created .env with random passwords (from .env.example)"
fi
for level in level*/; do
    [ -f "$level/compose.yaml" ] && ln -sfn ../.env "$level/.env"
done
exit 0
