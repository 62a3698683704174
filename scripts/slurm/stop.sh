#!/usr/bin/env bash
# Stop the single-node SLURM cluster that scripts/slurm/start.sh brought up: cancel its jobs, then stop
# exactly the daemons it started, by the pid files under KARAT_SLURM_DIR (never by name): slurmd,
# slurmctld, slurmdbd, mariadbd, munged. A pid whose process is not the expected program (a stale pid file
# whose number was reused) is left alone. Removes the link /etc/slurm/slurm.conf if it points here. Idempotent.
#
#   sudo bash scripts/slurm/stop.sh           # keep KARAT_SLURM_DIR (database, logs): the next start is quick
#   sudo bash scripts/slurm/stop.sh --purge   # and delete KARAT_SLURM_DIR
set -euo pipefail

DIR="${KARAT_SLURM_DIR:-/tmp/karat-slurm}"
purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1;;
        *) echo "[slurm] error: unknown argument '$arg' (allowed: --purge)" >&2; exit 2;;
    esac
done
case "$DIR" in /*) ;; *) echo "[slurm] error: KARAT_SLURM_DIR must be an absolute path, got '$DIR'" >&2; exit 2;; esac
[ -d "$DIR" ] || { echo "[slurm] nothing to stop: $DIR does not exist"; exit 0; }
export SLURM_CONF="$DIR/etc/slurm.conf"

pid_of() {  # pid_of PIDFILE PROGRAM: the pid if it is alive and runs PROGRAM
    local file=$1 prog=$2 pid exe want
    [ -s "$file" ] || return 1
    pid=$(tr -dc 0-9 < "$file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    want=$(readlink -f "$(command -v "$prog" || echo "/nonexistent/$prog")")
    if [ "${exe% (deleted)}" != "$want" ]; then
        echo "[slurm] $file: pid $pid runs '${exe:-?}', not $prog ($want): left alone" >&2
        return 1
    fi
    echo "$pid"
}

stop() {  # stop PIDFILE PROGRAM
    local file=$1 prog=$2 pid
    if ! pid=$(pid_of "$file" "$prog"); then rm -f "$file"; return 0; fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "[slurm] $prog (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    echo "[slurm] stopped $prog (pid $pid)"
}

# Jobs first: their slurmstepd processes outlive slurmd by design.
if pid_of "$DIR/run/slurmctld.pid" slurmctld > /dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        echo "[slurm] cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 150); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
fi
stop "$DIR/run/slurmd.pid" slurmd
stop "$DIR/run/slurmctld.pid" slurmctld
stop "$DIR/run/slurmdbd.pid" slurmdbd
stop "$DIR/mysql/mysqld.pid" mariadbd
stop "$DIR/munge/munged.pid" munged
LINK=/etc/slurm/slurm.conf
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$SLURM_CONF" ]; then
    rm -f "$LINK"
fi
if [ "$purge" = 1 ]; then
    rm -rf "$DIR"
    echo "[slurm] removed $DIR"
fi
