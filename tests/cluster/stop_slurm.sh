#!/usr/bin/env bash
# Stop the cluster started by tests/cluster/start_slurm.sh: kill slurmd, slurmctld and munged
# by the PIDs recorded in STATE_DIR (never by name), wait for them to exit, SIGKILL stragglers.
#
#   tests/cluster/stop_slurm.sh [STATE_DIR]     (default: $GSM8K_SLURM_STATE or /tmp/gsm8k-slurm)
set -euo pipefail

STATE_DIR="${1:-${GSM8K_SLURM_STATE:-/tmp/gsm8k-slurm}}"
log() { echo "[stop_slurm] $*" >&2; }

# Cancel what is still queued so slurmd does not leave job steps behind.
if [[ -f "$STATE_DIR/slurm.conf" ]] && command -v scancel >/dev/null 2>&1; then
  SLURM_CONF="$STATE_DIR/slurm.conf" timeout 10 scancel --quiet --full --user=root 2>/dev/null || true
fi

stop_pid() {
  local name="$1" pidfile="$STATE_DIR/$1.pid" pid
  [[ -s "$pidfile" ]] || { log "$name: no pid file"; return 0; }
  pid="$(cat "$pidfile")"
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) not running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name (pid $pid) stopped"
}

stop_pid slurmd
stop_pid slurmctld
stop_pid munged

# Remove the /etc/slurm/slurm.conf link start_slurm.sh made, if it still points at us.
if [[ -L /etc/slurm/slurm.conf && "$(readlink /etc/slurm/slurm.conf)" == "$STATE_DIR/slurm.conf" ]]; then
  rm -f /etc/slurm/slurm.conf
fi
