#!/usr/bin/env bash
# Bring up a single-node SLURM cluster, with accounting, on this machine: a place to try
# `snakemake --workflow-profile workflow/profiles/slurm` without a real cluster, and what the pipeline test
# (tests/pipeline/test_slurm.py) submits to. Root only. Idempotent: a second call with the cluster up only
# checks that it is up. Stop it with scripts/slurm/stop.sh (same KARAT_SLURM_DIR).
#
#   sudo bash scripts/slurm/start.sh
#   source /tmp/karat-slurm/env        # SLURM_CONF for sbatch/squeue/sacct and for Snakemake
#   sbatch --wrap hostname; squeue; sacct
#
# It installs the Debian/Ubuntu packages if they are missing (slurmctld slurmd slurm-client slurmdbd munge
# mariadb-server; apt-get, no services are started by the install), writes its own configuration under
# KARAT_SLURM_DIR and starts, each with a pid file there: munged (its own key and socket), MariaDB (its own
# data directory, on 127.0.0.1 only), slurmdbd, slurmctld and slurmd. Nothing is written to /etc/slurm,
# /etc/munge or /var/lib/mysql, and no system service is touched; the one file outside it is a symbolic link
# /etc/slurm/slurm.conf -> KARAT_SLURM_DIR/etc/slurm.conf (srun inside a job reads the default path), made
# only where no slurm.conf is there and removed by stop.sh.
#
# The node is a test node: it advertises KARAT_SLURM_CPUS CPUs, KARAT_SLURM_MEM_MB of memory and
# KARAT_SLURM_GPUS GPUs (SlurmdParameters=config_overrides), so the slurm profile's requests as shipped
# (GPU jobs, tens of GB, several CPUs) are scheduled here and run on what the machine really has. Without
# NVIDIA devices the GPUs are stand-ins (device files under KARAT_SLURM_DIR/dev): a job that asks for one
# is scheduled and runs on the CPU.
# Accounting enforces associations: jobs must name an account the user belongs to (KARAT_SLURM_ACCOUNT).
#
# Settings (environment variables):
#   KARAT_SLURM_DIR        where config, state, logs, pid files and the database live (default /tmp/karat-slurm)
#   KARAT_SLURM_PORT       first of four TCP ports on 127.0.0.1: slurmctld, slurmd, slurmdbd, MariaDB
#                          (default 6817)
#   KARAT_SLURM_ACCOUNT    the account created for root (and $SUDO_USER) (default karat)
#   KARAT_SLURM_PARTITION  the (default) partition (default debug)
#   KARAT_SLURM_CPUS       CPUs the node advertises (default: the larger of this machine's and 32)
#   KARAT_SLURM_MEM_MB     memory the node advertises (default: the larger of this machine's and 262144)
#   KARAT_SLURM_GPUS       GPUs the node advertises (default: the NVIDIA devices present, else 4 stand-ins)
#   KARAT_SLURM_KILL_WAIT  seconds between SIGTERM and SIGKILL when a job hits its time limit (default 10)
set -euo pipefail

die() { echo "[slurm] error: $*" >&2; exit 1; }
log() { echo "[slurm] $*"; }

[ "$(id -u)" = 0 ] || die "this script must run as root (it installs packages and starts daemons as root)"

DIR="${KARAT_SLURM_DIR:-/tmp/karat-slurm}"
PORT="${KARAT_SLURM_PORT:-6817}"
ACCOUNT="${KARAT_SLURM_ACCOUNT:-karat}"
PARTITION="${KARAT_SLURM_PARTITION:-debug}"
KILL_WAIT="${KARAT_SLURM_KILL_WAIT:-10}"
CLUSTER=karat
case "$DIR" in /*) ;; *) die "KARAT_SLURM_DIR must be an absolute path, got '$DIR'";; esac
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1024 ] && [ "$PORT" -le 65530 ] \
    || die "KARAT_SLURM_PORT must be a number in 1024..65530, got '$PORT'"
for name in ACCOUNT PARTITION; do
    [[ "${!name}" =~ ^[A-Za-z0-9_]+$ ]] || die "KARAT_SLURM_$name must be letters, digits or _, got '${!name}'"
done
[[ "$KILL_WAIT" =~ ^[0-9]+$ ]] || die "KARAT_SLURM_KILL_WAIT must be a number of seconds, got '$KILL_WAIT'"
# munged's and MariaDB's Unix sockets live under $DIR: a socket path has at most 107 bytes.
[ "${#DIR}" -le 80 ] || die "KARAT_SLURM_DIR must be at most 80 characters (Unix socket paths), got ${#DIR}"
CTLD_PORT=$PORT; SLURMD_PORT=$((PORT + 1)); DBD_PORT=$((PORT + 2)); DB_PORT=$((PORT + 3))

# ---- packages
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v slurmdbd >/dev/null || need+=(slurmdbd)
command -v munged >/dev/null || need+=(munge)
command -v mariadbd >/dev/null || need+=(mariadb-server)
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    log "installing ${need[*]} (apt-get)"
    # Package scripts must not start the system's own munge/mariadb/slurm services.
    policy=/usr/sbin/policy-rc.d; made_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ "$made_policy" = 1 ] && rm -f "$policy"
fi

export SLURM_CONF="$DIR/etc/slurm.conf"
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    while [ "$SECONDS" -lt "$deadline" ]; do timeout 10 "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "$what did not come up within $limit s; see $DIR/log/"
}

mkdir -p "$DIR"/{etc,run,log,state,spool/slurmd,munge,mysql,dev}
chmod 755 "$DIR" "$DIR"/{etc,run,log}
chmod 700 "$DIR/state" "$DIR/spool"

# ---- sizes of the node
real_cpus=$(nproc)
real_mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
CPUS="${KARAT_SLURM_CPUS:-$(( real_cpus > 32 ? real_cpus : 32 ))}"
MEM="${KARAT_SLURM_MEM_MB:-$(( real_mem > 262144 ? real_mem : 262144 ))}"
gpu_files=(); for f in /dev/nvidia[0-9]*; do [ -e "$f" ] && gpu_files+=("$f"); done
GPUS="${KARAT_SLURM_GPUS:-$(( ${#gpu_files[@]} > 0 ? ${#gpu_files[@]} : 4 ))}"
for name in CPUS MEM GPUS; do
    [[ "${!name}" =~ ^[0-9]+$ ]] || die "KARAT_SLURM_$name must be a whole number, got '${!name}'"
done
[ "$CPUS" -ge 1 ] || die "KARAT_SLURM_CPUS must be at least 1, got $CPUS"

# ---- configuration (rewritten on every call; running daemons keep the one they started with)
[ -s "$DIR/etc/db.pass" ] || (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$DIR/etc/db.pass")
DB_PASS=$(cat "$DIR/etc/db.pass")
gres_line=""; [ "$GPUS" -gt 0 ] && gres_line=" Gres=gpu:$GPUS"
cat > "$DIR/etc/slurm.conf" <<EOF
# Written by scripts/slurm/start.sh: a single-node test cluster. Do not edit; set KARAT_SLURM_* instead.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups needed: processes tracked by parent id, tasks bound with sched_setaffinity.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# A job asking for more than the node has is rejected at submission instead of pending forever.
EnforcePartLimits=ALL
ReturnToService=2
# The node advertises the sizes below whatever the machine has (a test node).
SlurmdParameters=config_overrides
KillWait=$KILL_WAIT
MinJobAge=300
InactiveLimit=0
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# The munge socket for the connections to slurmdbd (AuthInfo covers the others).
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM$gres_line State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
{
    echo "# Written by scripts/slurm/start.sh"
    if [ "$GPUS" -gt 0 ] && [ "${#gpu_files[@]}" -ge "$GPUS" ]; then
        for ((i = 0; i < GPUS; i++)); do echo "NodeName=localhost Name=gpu File=${gpu_files[$i]}"; done
    elif [ "$GPUS" -gt 0 ]; then
        # Slurm drops GPUs without a device file: stand-ins (character devices like /dev/null) under $DIR.
        for ((i = 0; i < GPUS; i++)); do
            f="$DIR/dev/gpu$i"
            [ -e "$f" ] || mknod -m 644 "$f" c 1 3 2>/dev/null || touch "$f"
            echo "NodeName=localhost Name=gpu File=$f"
        done
    fi
} > "$DIR/etc/gres.conf"
(umask 077; cat > "$DIR/etc/slurmdbd.conf" <<EOF
# Written by scripts/slurm/start.sh
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
chmod 600 "$DIR/etc/slurmdbd.conf"
chmod 644 "$DIR/etc/slurm.conf" "$DIR/etc/gres.conf"
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" > "$DIR/env"
# srun inside a job must find this configuration without SLURM_CONF (the Snakemake plugin's job step drops
# every inherited SLURM_* variable but a few): link the default path to it, if that path is free.
LINK=/etc/slurm/slurm.conf
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$SLURM_CONF" ]; then
    :
elif [ -e "$LINK" ] || [ -L "$LINK" ]; then
    die "$LINK exists and is not this cluster's configuration ($SLURM_CONF): srun inside jobs would read it. \
Stop the cluster it belongs to (scripts/slurm/stop.sh with its KARAT_SLURM_DIR) or move it away."
else
    mkdir -p "$(dirname "$LINK")"
    ln -s "$SLURM_CONF" "$LINK"
fi

# ---- munged (own key, socket, pid file)
chown munge:munge "$DIR/munge"; chmod 755 "$DIR/munge"
if [ ! -s "$DIR/munge/munge.key" ]; then
    (umask 077; head -c 1024 /dev/urandom > "$DIR/munge/munge.key")
    chown munge:munge "$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"
fi
if alive "$DIR/munge/munged.pid"; then
    log "munged is running (pid $(cat "$DIR/munge/munged.pid"))"
else
    runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
        < /dev/null > "$DIR/log/munged.out" 2>&1 || die "munged failed: $(cat "$DIR/log/munged.out")"
    wait_for 10 munged munge -n -S "$DIR/munge/munge.socket"
    log "munged started (pid $(cat "$DIR/munge/munged.pid"))"
fi

# ---- MariaDB (own data directory, 127.0.0.1:$DB_PORT)
chown mysql:mysql "$DIR/mysql"; chmod 700 "$DIR/mysql"
DB_SOCK="$DIR/mysql/mysqld.sock"
if [ ! -d "$DIR/mysql/data/mysql" ]; then
    log "initialising the accounting database in $DIR/mysql/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql/data" --auth-root-authentication-method=socket \
        --skip-test-db > "$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
fi
if alive "$DIR/mysql/mysqld.pid"; then
    log "mariadbd is running (pid $(cat "$DIR/mysql/mysqld.pid"))"
else
    setsid mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql/data" --socket="$DB_SOCK" \
        --pid-file="$DIR/mysql/mysqld.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        < /dev/null > /dev/null 2>&1 &
    wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$DB_SOCK" ping
    wait_for 10 "mariadbd's pid file" test -s "$DIR/mysql/mysqld.pid"
    log "mariadbd started (pid $(cat "$DIR/mysql/mysqld.pid"))"
fi
mariadb --no-defaults --socket="$DB_SOCK" -u root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF

# ---- slurmdbd, then the cluster, account and users in the accounting database
if alive "$DIR/run/slurmdbd.pid"; then
    log "slurmdbd is running (pid $(cat "$DIR/run/slurmdbd.pid"))"
else
    slurmdbd < /dev/null > "$DIR/log/slurmdbd.out" 2>&1 || die "slurmdbd failed: $(cat "$DIR/log/slurmdbd.out")"
    wait_for 60 slurmdbd sacctmgr -n list cluster
    log "slurmdbd started (pid $(cat "$DIR/run/slurmdbd.pid"))"
fi
if [ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster)" ]; then
    sacctmgr -i add cluster "$CLUSTER" > /dev/null
fi
if [ -z "$(sacctmgr -n -P list account "$ACCOUNT" format=account)" ]; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="karat-repro test account" \
        organization=karat > /dev/null
fi
for user in root ${SUDO_USER:-}; do
    if [ -z "$(sacctmgr -n -P list assoc user="$user" account="$ACCOUNT" format=user)" ]; then
        sacctmgr -i add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" > /dev/null
    fi
done

# ---- slurmctld, slurmd
if alive "$DIR/run/slurmctld.pid"; then
    log "slurmctld is running (pid $(cat "$DIR/run/slurmctld.pid"))"
else
    slurmctld < /dev/null > "$DIR/log/slurmctld.out" 2>&1 || die "slurmctld failed: $(cat "$DIR/log/slurmctld.out")"
    wait_for 30 slurmctld scontrol ping
    log "slurmctld started (pid $(cat "$DIR/run/slurmctld.pid"))"
fi
if alive "$DIR/run/slurmd.pid"; then
    log "slurmd is running (pid $(cat "$DIR/run/slurmd.pid"))"
else
    slurmd -N localhost < /dev/null > "$DIR/log/slurmd.out" 2>&1 || die "slurmd failed: $(cat "$DIR/log/slurmd.out")"
    wait_for 10 "slurmd's pid file" test -s "$DIR/run/slurmd.pid"
    log "slurmd started (pid $(cat "$DIR/run/slurmd.pid"))"
fi

# ---- wait until the node takes jobs
node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -1; }
state=""
for _ in $(seq 150); do
    state=$(node_state)
    case "$state" in
        idle|mixed|allocated) break;;
        drain*|down*) scontrol update nodename=localhost state=resume 2>/dev/null || true;;
    esac
    sleep 0.2
done
case "$state" in idle|mixed|allocated) ;; *)
    die "node localhost is '$state' after 30 s (scontrol show node localhost; $DIR/log/slurmd.log)";;
esac
log "cluster '$CLUSTER' is up: node localhost $state, ${CPUS} CPUs, ${MEM} MB, ${GPUS} GPU(s); partition $PARTITION; account $ACCOUNT"
log "use it with: source $DIR/env"
