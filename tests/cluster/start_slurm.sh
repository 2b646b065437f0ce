#!/usr/bin/env bash
# Start a throw-away one-node SLURM cluster on localhost, as root, without systemd.
#
#   tests/cluster/start_slurm.sh [STATE_DIR]      (default: $GSM8K_SLURM_STATE or /tmp/gsm8k-slurm)
#
# * installs Debian's slurmctld, slurmd, slurm-client and munge if absent (apt-get);
# * writes slurm.conf/gres.conf into STATE_DIR and runs its own munged on a private socket;
#   /etc/slurm/slurm.conf becomes a symlink to STATE_DIR/slurm.conf (jobs' nested `srun` only
#   looks there); a foreign /etc/slurm/slurm.conf makes it stop with an error;
# * the node `localhost` has 2 fake GPUs (gres files are symlinks to /dev/null): jobs that ask
#   `--gpus=1` get CUDA_VISIBLE_DEVICES set by SLURM;
# * no slurmdbd: `sacct` does not work, so use `slurm-status-command: squeue` (MinJobAge=600);
# * PIDs go to STATE_DIR/{munged,slurmctld,slurmd}.pid; stop with tests/cluster/stop_slurm.sh.
#
# Prints `export SLURM_CONF=...` and a line `SLURM READY` when the node is idle.
# Exit status 77 (with a line `[start_slurm] CANNOT INSTALL: ...`) means only that SLURM/munge
# are missing and apt-get could not install them; any other failure (a daemon that does not
# start, a node that never gets ready) exits 1: tests may skip on 77 alone.
# Clients (sbatch, squeue, snakemake) must run with SLURM_CONF=STATE_DIR/slurm.conf.
#
# Env knobs: GSM8K_SLURM_CTLD_PORT (6817), GSM8K_SLURM_SLURMD_PORT (6818),
#            GSM8K_SLURM_GPUS (2), GSM8K_SLURM_CPUS (16), GSM8K_SLURM_MEM_MB (65536),
#            GSM8K_SLURM_READY_TIMEOUT (60 s).
set -euo pipefail

STATE_DIR="${1:-${GSM8K_SLURM_STATE:-/tmp/gsm8k-slurm}}"
CTLD_PORT="${GSM8K_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${GSM8K_SLURM_SLURMD_PORT:-6818}"
NGPUS="${GSM8K_SLURM_GPUS:-2}"
READY_TIMEOUT="${GSM8K_SLURM_READY_TIMEOUT:-60}"

log() { echo "[start_slurm] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cannot_install() { log "CANNOT INSTALL: $*"; exit 77; }

[[ "$(id -u)" == 0 ]] || die "must run as root (slurmd needs it)"

need_install=0
for bin in slurmctld slurmd sbatch squeue scontrol munged munge unmunge; do
  command -v "$bin" >/dev/null 2>&1 || need_install=1
done
if [[ "$need_install" == 1 ]]; then
  command -v apt-get >/dev/null 2>&1 || cannot_install "slurm/munge missing and no apt-get"
  log "installing slurmctld slurmd slurm-client munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || cannot_install "apt-get update failed"
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >&2 \
    || cannot_install "apt-get install slurmctld slurmd slurm-client munge failed"
  for bin in slurmctld slurmd sbatch squeue scontrol munged munge unmunge; do
    command -v "$bin" >/dev/null 2>&1 || die "apt-get installed SLURM/munge but $bin is missing"
  done
fi

# Refuse to start twice on one state dir: stop the previous cluster first.
for name in slurmd slurmctld munged; do
  pidfile="$STATE_DIR/$name.pid"
  if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "$name already running (pid $(cat "$pidfile")); run tests/cluster/stop_slurm.sh $STATE_DIR"
  fi
done

# Fresh state every start: a stale StateSaveLocation resurrects old jobs and node states.
rm -rf "$STATE_DIR/ctld" "$STATE_DIR/spool" "$STATE_DIR/munge" "$STATE_DIR/gpus"
mkdir -p "$STATE_DIR" "$STATE_DIR/ctld" "$STATE_DIR/spool" "$STATE_DIR/munge" "$STATE_DIR/gpus"
chmod 755 "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"

# ---- munge: own daemon, own socket, the package's key -------------------------------------
KEY=/etc/munge/munge.key
if [[ ! -s "$KEY" ]]; then
  log "creating $KEY"
  if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile="$KEY" --force
  else dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none; fi
  chown munge:munge "$KEY" && chmod 400 "$KEY"
fi
chown munge:munge "$STATE_DIR/munge"
chmod 755 "$STATE_DIR/munge"
MUNGE_SOCKET="$STATE_DIR/munge/munge.socket"
runuser -u munge -- /usr/sbin/munged \
  --socket="$MUNGE_SOCKET" \
  --pid-file="$STATE_DIR/munge/munged.pid" \
  --log-file="$STATE_DIR/munge/munged.log" \
  --seed-file="$STATE_DIR/munge/munged.seed" \
  || die "munged failed to start; see $STATE_DIR/munge/munged.log"
for _ in $(seq 50); do [[ -s "$STATE_DIR/munge/munged.pid" ]] && break; sleep 0.1; done
cp "$STATE_DIR/munge/munged.pid" "$STATE_DIR/munged.pid"
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null \
  || die "munge round trip failed; see $STATE_DIR/munge/munged.log"

# ---- node resources -------------------------------------------------------------------------
# `slurmd -C` prints e.g. "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105". Without
# SlurmdParameters=config_overrides, CPUs/RealMemory above the detected values make the node
# INVALID. We advertise at least GSM8K_SLURM_CPUS / GSM8K_SLURM_MEM_MB (default 16 / 65536, what
# profiles/slurm asks for an `evaluate` job) and let slurmd trust the config: the test jobs are
# tiny, and the profile is exercised unchanged.
detected="$(slurmd -C | head -n1)"
DET_CPUS="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$detected")"
DET_MEM="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")"
[[ -n "$DET_CPUS" && -n "$DET_MEM" ]] || die "cannot parse 'slurmd -C': $detected"
CPUS="${GSM8K_SLURM_CPUS:-16}"
MEM="${GSM8K_SLURM_MEM_MB:-65536}"
((CPUS >= DET_CPUS)) || CPUS="$DET_CPUS"
((MEM >= DET_MEM)) || MEM="$DET_MEM"

# ---- fake GPUs: gres File= must exist and be a device; symlinks to /dev/null do -----------
for ((i = 0; i < NGPUS; i++)); do
  ln -s /dev/null "$STATE_DIR/gpus/nvidia$i"
done
gpu_files="$STATE_DIR/gpus/nvidia[0-$((NGPUS - 1))]"

cat >"$STATE_DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=localhost Name=gpu File=$gpu_files
EOF

cat >"$STATE_DIR/slurm.conf" <<EOF
# generated by tests/cluster/start_slurm.sh - throw-away test cluster
ClusterName=gsm8k-test
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# No slurmdbd: finished jobs are only visible to squeue for MinJobAge seconds. The snakemake
# slurm plugin silently falls back to sacct unless MinJobAge >= 3 x its initial status delay.
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# Clients inside jobs must find the config too: the slurm-jobstep plugin (0.6.1) strips every
# SLURM_* variable, SLURM_CONF included, before its nested `srun`, so SLURM_CONF alone is not
# enough. Link the default path /etc/slurm/slurm.conf to ours, unless a foreign config is there.
SYS_CONF=/etc/slurm/slurm.conf
if [[ -L "$SYS_CONF" && ! -e "$SYS_CONF" ]]; then
  rm -f "$SYS_CONF"  # dangling link left by a cluster whose state dir is gone
fi
if [[ -e "$SYS_CONF" ]]; then
  if ! grep -q '^# generated by tests/cluster/start_slurm.sh' "$SYS_CONF" 2>/dev/null; then
    [[ "${GSM8K_SLURM_KEEP_SYSTEM_CONF:-0}" == 1 ]] \
      || die "$SYS_CONF exists and is not ours; move it away or set GSM8K_SLURM_KEEP_SYSTEM_CONF=1 (then nested srun in jobs uses it)"
  fi
fi
if [[ "${GSM8K_SLURM_KEEP_SYSTEM_CONF:-0}" != 1 ]]; then
  mkdir -p /etc/slurm
  ln -sfn "$STATE_DIR/slurm.conf" "$SYS_CONF"
fi

export SLURM_CONF="$STATE_DIR/slurm.conf"

/usr/sbin/slurmctld -f "$SLURM_CONF" -c || die "slurmctld failed; see $STATE_DIR/slurmctld.log"
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost || die "slurmd failed; see $STATE_DIR/slurmd.log"

deadline=$((SECONDS + READY_TIMEOUT))
state=""
while ((SECONDS < deadline)); do
  state="$(sinfo -h -n localhost -o '%t' 2>/dev/null || true)"
  if [[ "$state" == idle* ]]; then
    break
  fi
  sleep 0.5
done
if [[ "$state" != idle* ]]; then
  log "node state '${state:-unknown}' after ${READY_TIMEOUT}s"
  scontrol show node localhost >&2 || true
  tail -n 20 "$STATE_DIR/slurmctld.log" "$STATE_DIR/slurmd.log" >&2 || true
  die "cluster not ready"
fi

echo "export SLURM_CONF=$SLURM_CONF"
echo "SLURM READY (node localhost: $CPUS CPUs, ${MEM} MB advertised (${DET_CPUS} CPUs, ${DET_MEM} MB real), gpu:$NGPUS; state dir $STATE_DIR)"
