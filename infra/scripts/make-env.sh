#!/usr/bin/env bash
# Create .env from .env.example once, with a fresh random value for every `change-me`, and
# link it into each level folder, where `docker compose` looks for it. Settings added to
# .env.example since .env was created are appended to it (with their own random values);
# the ones already there are never changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
umask 077  # .env holds passwords: readable by its owner only, from the first byte
[ -f .env ] || { : >.env; echo "creating .env with random passwords (from .env.example)"; }
added=0
while IFS= read -r line; do
    [[ "$line" == \#* || "$line" != *=* ]] && continue
    grep -q "^${line%%=*}=" .env && continue
    line="${line//change-me/$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}"
    printf '%s\n' "$line" >>.env
    added=$((added + 1))
done <.env.example
[ "$added" = 0 ] || echo ".env: $added setting(s) added from .env.example"
for level in level*/; do
    [ -f "$level/compose.yaml" ] && ln -sfn ../.env "$level/.env"
done
exit 0
