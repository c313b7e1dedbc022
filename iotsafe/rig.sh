#!/usr/bin/env bash
# Brings the IoT SAFE test rig up or down: a private pcscd with one vpcd
# reader ("IoTSAFE Sim 00 00" on 127.0.0.1:36016, "... 00 01" on :36017)
# and the simulated card in slot 0, its memory in a directory.
#
#   iotsafe/rig.sh up [CARD_DIR] [DNS_NAME]   # provisions key 01 + cert 02 if CARD_DIR has no key
#   iotsafe/rig.sh down
#   iotsafe/rig.sh status
#
# Environment: RIG_STATE (default /tmp/iotsafe-rig) holds the pid and logs;
# SIM_FAULTS_FILE names a control file for fault injection (see README).
# Only one pcscd can run per host: stop the system one first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${RIG_STATE:-/tmp/iotsafe-rig}
sim="$here/target/debug/iotsafe-sim"

case "${1:-}" in
up)
  dir=${2:-$state/card}
  name=${3:-iotsafe-sim._device.example}
  mkdir -p "$state"
  if [ -f "$state/rig.pid" ] && kill -0 "$(cat "$state/rig.pid")" 2>/dev/null; then
    echo "rig already running (pid $(cat "$state/rig.pid"))"; exit 0
  fi
  (cd "$here" && cargo build -q -p iotsafe -p iotsafe-sim)
  args=(rig --dir "$dir" --provision-name "$name")
  [ -n "${SIM_FAULTS_FILE:-}" ] && args+=(--control "$SIM_FAULTS_FILE")
  "$sim" "${args[@]}" >"$state/rig.out" 2>"$state/rig.err" &
  echo $! >"$state/rig.pid"
  for _ in $(seq 1 200); do
    if grep -q READY "$state/rig.out" 2>/dev/null; then
      cat "$state/rig.out"; echo "card memory: $dir"; exit 0
    fi
    kill -0 "$(cat "$state/rig.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "rig failed to start:" >&2; cat "$state/rig.err" >&2
  kill "$(cat "$state/rig.pid")" 2>/dev/null || true
  rm -f "$state/rig.pid"; exit 1
  ;;
down)
  [ -f "$state/rig.pid" ] || { echo "rig not running"; exit 0; }
  pid=$(cat "$state/rig.pid")
  kill "$pid" 2>/dev/null || true
  # The rig stops its pcscd (SIGTERM, SIGKILL after 5 s) before exiting.
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "rig pid $pid did not stop" >&2; exit 1; }
  rm -f "$state/rig.pid"; echo "rig stopped"
  ;;
status)
  if [ -f "$state/rig.pid" ] && kill -0 "$(cat "$state/rig.pid")" 2>/dev/null; then
    echo "running (pid $(cat "$state/rig.pid"))"; "$here/target/debug/iotsafe" readers
  else
    echo "not running"; exit 1
  fi
  ;;
*)
  sed -n '2,13p' "$0"; exit 2
  ;;
esac
