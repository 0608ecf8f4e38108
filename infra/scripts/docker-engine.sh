#!/usr/bin/env bash
# Make a Docker engine with Compose v2 available, on a Debian machine that may have neither.
#
#   infra/scripts/docker-engine.sh install   # docker.io from Debian + the Compose v2 plugin
#   infra/scripts/docker-engine.sh start     # start dockerd if no engine answers; remember its PID
#   infra/scripts/docker-engine.sh stop      # stop the dockerd that `start` started, nothing else
#
# On a laptop with Docker Desktop or a running engine, `install` and `start` do nothing.
# Needs root for install/start (CI machines run as root). No Docker Hub access needed.
set -euo pipefail

STATE_DIR="${DOCKER_ENGINE_STATE:-/tmp/mlops-levels-dockerd}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"

say() { echo "docker-engine: $*"; }

engine_answers() { docker info >/dev/null 2>&1; }

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

install_compose_v2() {
    # Debian bookworm only packages Compose v1. trixie's docker-compose package is the Go
    # Compose v2 plugin: one static binary, depends only on libc. Fetch it without touching
    # the system's apt configuration.
    local work=/tmp/mlops-levels-trixie
    rm -rf "$work" && mkdir -p "$work/lists/partial" "$work/parts"
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$(debian_mirror)" >"$work/parts/trixie.sources"
    local o=(-oDir::Etc::SourceList=/dev/null -oDir::Etc::SourceParts="$work/parts" -oDir::State::Lists="$work/lists")
    apt-get "${o[@]}" update -qq
    # _apt cannot write to a root-owned temp dir: download as root, as apt suggests itself.
    (cd "$work" && apt-get "${o[@]}" -oAPT::Sandbox::User=root download -qq docker-compose)
    dpkg -x "$work"/docker-compose_*.deb "$work/x"
    install -D "$work/x/usr/libexec/docker/cli-plugins/docker-compose" \
        /usr/local/lib/docker/cli-plugins/docker-compose
    rm -rf "$work"
}

install_engine() {
    if ! command -v dockerd >/dev/null && ! engine_answers; then
        command -v apt-get >/dev/null || { say "no engine and no apt-get: install Docker yourself (https://docs.docker.com/engine/install/)"; exit 1; }
        say "installing docker.io and debootstrap from Debian"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
    fi
    if ! command -v debootstrap >/dev/null && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    if ! docker compose version >/dev/null 2>&1; then
        say "installing the Compose v2 plugin from Debian trixie"
        install_compose_v2
    fi
    say "$(docker compose version)"
}

# The PID in the file, if that process is still a dockerd (a stale file may name a reused PID).
our_dockerd() {
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

start_engine() {
    if engine_answers; then
        say "an engine is already running: using it"
        [ -n "$(our_dockerd)" ] || rm -f "$PID_FILE"  # not ours to stop later
        return 0
    fi
    command -v dockerd >/dev/null || { say "no dockerd: run '$0 install' first"; exit 1; }
    mkdir -p "$STATE_DIR"
    say "starting dockerd (log: $LOG_FILE)"
    nohup dockerd >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 60); do
        engine_answers && { say "engine ready (pid $(cat "$PID_FILE"))"; return 0; }
        kill -0 "$(cat "$PID_FILE")" 2>/dev/null || break
        sleep 1
    done
    say "dockerd did not come up; last lines of its log:"
    tail -n 30 "$LOG_FILE" >&2
    stop_engine
    exit 1
}

stop_engine() {
    local pid
    pid=$(our_dockerd) || pid=""
    rm -f "$PID_FILE"
    if [ -z "$pid" ]; then
        say "no dockerd started by this script is running: leaving the engine alone"
        return 0
    fi
    say "stopping dockerd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
    install) install_engine ;;
    start) start_engine ;;
    stop) stop_engine ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
