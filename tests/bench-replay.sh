#!/usr/bin/env bash
# Replay throughput, the two ways a restore to a point can apply archived
# binary logs, on real servers (needs root; no cluster):
#   bash tests/bench-replay.sh
# A source server writes EBISU_BENCH_BINLOG_MIB (256 by default) of binary
# log under a steady writer (transactions of 10 rows of 200 bytes, row
# format), then each way replays those files into a copy of the source's
# data taken before the writes, on the same server settings (binary log on,
# durable commits, as a restored primary runs):
#   pipe      the flavor's binary log reader piped into its client (what
#             the init step did before);
#   applier   the files placed as the server's relay log and applied by its
#             own replication applier (what the init step does now: serial
#             on MariaDB, 4 workers on MySQL), without parallel workers, then with
#             EBISU_BENCH_WORKERS (4) (MariaDB: slave_parallel_mode
#             EBISU_BENCH_PARALLEL_MODE, conservative by default; its
#             parallel applier crashes 10.11.19 on such a relay log, which
#             the run reports and goes on).
# Prints transactions per second and MB/s of each and checks that each
# reached the source's GTID set and row count. EBISU_BENCH_FLAVORS picks the
# servers (`mariadb,mysql`; MySQL runs chrooted in the root file system
# tests/build-rootfs.sh builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh >/dev/null
MIB=${EBISU_BENCH_BINLOG_MIB:-256}
WORKERS=${EBISU_BENCH_WORKERS:-4}
FLAVORS=${EBISU_BENCH_FLAVORS:-mariadb,mysql}
WORK=/tmp/ebisu-bench-replay
PASSWORD=bench-$RANDOM$RANDOM

mysql_root() {
	bash tests/build-rootfs.sh >/dev/null
	echo "${EBISU_CACHE:-$HOME/.cache/ebisu}/rootfs/mysql-sid-2"
}

# Runs a program of the flavor: the host's for MariaDB, chrooted in the
# MySQL root (with the work directory bound in) for MySQL.
run() {
	if [[ $FLAVOR == mariadb ]]; then
		"$@"
	else
		unshare -m sh -c 'root=$1 dir=$2; shift 2
mkdir -p "$root$dir" && mount --bind "$dir" "$root$dir" && exec chroot "$root" "$@"' \
			sh "$ROOT" "$WORK" "$@"
	fi
}

server_bin() { [[ $FLAVOR == mariadb ]] && echo mariadbd || echo mysqld; }
client_bin() { [[ $FLAVOR == mariadb ]] && echo mariadb || echo mysql; }
reader_bin() { [[ $FLAVOR == mariadb ]] && echo mariadb-binlog || echo mysqlbinlog; }

# The configuration of server `name` with server id `id`.
config() {
	local name=$1 id=$2 dir=$WORK/$1
	cat >"$dir.cnf" <<EOF
[mysqld]
datadir=$dir/data
socket=$dir/sock
pid-file=$dir/pid
log-error=$dir/error.log
skip-networking
server-id=$id
log-bin=$dir/data/binlog
relay-log=$dir/data/relay
sync-binlog=1
innodb-flush-log-at-trx-commit=1
innodb-buffer-pool-size=512M
EOF
	if [[ $FLAVOR == mariadb ]]; then
		cat >>"$dir.cnf" <<EOF
log-slave-updates
skip-slave-start
innodb-log-file-size=256M
slave-parallel-mode=${EBISU_BENCH_PARALLEL_MODE:-conservative}
EOF
	else
		cat >>"$dir.cnf" <<EOF
gtid-mode=ON
enforce-gtid-consistency=ON
log-replica-updates
skip-replica-start
innodb-redo-log-capacity=256M
secure-file-priv=
EOF
	fi
}

start() {
	local name=$1
	run "$(server_bin)" --defaults-file="$WORK/$name.cnf" --user=root >/dev/null 2>&1 &
	for _ in $(seq 300); do
		[[ -S $WORK/$name/sock ]] && sql "$name" "SELECT 1" >/dev/null 2>&1 && return
		sleep 0.2
	done
	cat "$WORK/$name/error.log" >&2
	echo "server $name did not start" >&2
	exit 1
}

stop() {
	local name=$1 pid
	pid=$(cat "$WORK/$name/pid")
	kill "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
}

sql() {
	local name=$1
	shift
	run "$(client_bin)" --socket="$WORK/$name/sock" -uroot -p"$PASSWORD" -N -B -e "$*"
}

executed() {
	if [[ $FLAVOR == mariadb ]]; then
		sql "$1" "SELECT @@GLOBAL.gtid_binlog_pos"
	else
		sql "$1" "SELECT REPLACE(@@GLOBAL.gtid_executed, '\n', '')"
	fi
}

# A copy of the data before the writes, as server `name` with id `id`.
from_base() {
	local name=$1 id=$2
	rm -rf "${WORK:?}/$name"
	mkdir -p "$WORK/$name"
	cp -a "$WORK/base" "$WORK/$name/data"
	# Each copy is its own server (MySQL would refuse a second with the
	# source's identity as a source of its relay log).
	rm -f "$WORK/$name/data/auto.cnf"
	config "$name" "$id"
}

bench_flavor() {
	FLAVOR=$1
	[[ $FLAVOR == mysql ]] && ROOT=$(mysql_root)
	rm -rf "$WORK"
	mkdir -p "$WORK/source/data"
	config source 1
	if [[ $FLAVOR == mariadb ]]; then
		mariadb-install-db --defaults-file="$WORK/source.cnf" --user=root >/dev/null
		start source
		run mariadb --socket="$WORK/source/sock" -uroot -e \
			"ALTER USER root@localhost IDENTIFIED BY '$PASSWORD'"
	else
		run mysqld --defaults-file="$WORK/source.cnf" --user=root --initialize-insecure >/dev/null 2>&1
		start_insecure() {
			run mysqld --defaults-file="$WORK/source.cnf" --user=root >/dev/null 2>&1 &
			for _ in $(seq 300); do
				[[ -S $WORK/source/sock ]] && run mysql --socket="$WORK/source/sock" -uroot -e "SELECT 1" >/dev/null 2>&1 && return
				sleep 0.2
			done
			cat "$WORK/source/error.log" >&2
			exit 1
		}
		start_insecure
		run mysql --socket="$WORK/source/sock" -uroot -e \
			"ALTER USER root@localhost IDENTIFIED BY '$PASSWORD'"
	fi
	sql source "CREATE DATABASE bench; CREATE TABLE bench.t (id BIGINT PRIMARY KEY AUTO_INCREMENT, pad VARCHAR(200) NOT NULL) ENGINE=InnoDB"
	stop source
	cp -a "$WORK/source/data" "$WORK/base"
	start source
	local first_log
	if [[ $FLAVOR == mariadb ]]; then
		first_log=$(sql source "SHOW MASTER STATUS" | cut -f1)
	else
		first_log=$(sql source "SHOW BINARY LOG STATUS" | cut -f1)
	fi

	# The writes: 10 rows of 200 bytes a transaction, commit by commit.
	local rows=$((MIB * 1024 * 1024 / 4300 * 10))
	python3 - "$rows" >"$WORK/writes.sql" <<'EOF'
import sys
rows = int(sys.argv[1])
pad = "x" * 200
values = ",".join(f"(NULL,'{pad}')" for _ in range(10))
out = sys.stdout
for _ in range(rows // 10):
    out.write(f"INSERT INTO bench.t VALUES {values};\n")
EOF
	local began
	began=$(date +%s.%N)
	run "$(client_bin)" --socket="$WORK/source/sock" -uroot -p"$PASSWORD" <"$WORK/writes.sql"
	echo "$FLAVOR: the source wrote $((rows / 10)) transactions in $(echo "$(date +%s.%N) - $began" | bc) s"
	sql source "FLUSH BINARY LOGS" >/dev/null
	local want count files=() bytes=0
	want=$(executed source)
	count=$(sql source "SELECT COUNT(*) FROM bench.t")
	mapfile -t all < <(sql source "SHOW BINARY LOGS" | cut -f1)
	stop source
	local take=0
	for f in "${all[@]}"; do
		[[ $f == "$first_log" ]] && take=1
		if ((take)) && [[ $f != "${all[-1]}" ]]; then
			files+=("$WORK/source/data/$f")
			bytes=$((bytes + $(stat -c %s "$WORK/source/data/$f")))
		fi
	done
	local transactions=$((rows / 10))
	echo "$FLAVOR: ${#files[@]} binary log files, $((bytes / 1048576)) MiB, $transactions transactions, target $want"

	report() {
		local way=$1 seconds=$2 name=$3
		local got rows_now
		got=$(executed "$name")
		rows_now=$(sql "$name" "SELECT COUNT(*) FROM bench.t")
		if [[ $rows_now != "$count" ]]; then
			echo "$FLAVOR $way: $rows_now rows, the source has $count" >&2
			exit 1
		fi
		printf '%s %-10s %8.1f s %9.0f transactions/s %7.1f MB/s  reached %s\n' \
			"$FLAVOR" "$way" "$seconds" "$(echo "$transactions / $seconds" | bc -l)" \
			"$(echo "$bytes / 1000000 / $seconds" | bc -l)" "$got"
	}

	# The pipe.
	from_base pipe 2
	start pipe
	began=$(date +%s.%N)
	run "$(reader_bin)" "${files[@]}" |
		run "$(client_bin)" --socket="$WORK/pipe/sock" -uroot -p"$PASSWORD" --binary-mode
	report pipe "$(echo "$(date +%s.%N) - $began" | bc)" pipe
	stop pipe

	# The server's applier, over the files as its relay log.
	for workers in 0 "$WORKERS"; do
		local name=applier$workers n=0
		from_base "$name" 3
		: >"$WORK/$name/data/relay.index"
		for f in "${files[@]}"; do
			n=$((n + 1))
			cp "$f" "$WORK/$name/data/$(printf 'relay.%06d' "$n")"
			echo "$WORK/$name/data/$(printf 'relay.%06d' "$n")" >>"$WORK/$name/data/relay.index"
		done
		start "$name"
		if [[ $FLAVOR == mariadb ]]; then
			sql "$name" "SET GLOBAL slave_parallel_threads = $workers; CHANGE MASTER TO MASTER_HOST='replay.invalid', MASTER_USE_GTID=no, RELAY_LOG_FILE='relay.000001', RELAY_LOG_POS=4"
			began=$(date +%s.%N)
			sql "$name" "START SLAVE SQL_THREAD"
		else
			sql "$name" "SET GLOBAL replica_parallel_workers = $workers; CHANGE REPLICATION SOURCE TO SOURCE_HOST='replay.invalid', RELAY_LOG_FILE='relay.000001', RELAY_LOG_POS=4"
			began=$(date +%s.%N)
			sql "$name" "START REPLICA SQL_THREAD"
		fi
		until [[ $(executed "$name") == "$want" ]]; do
			if ! kill -0 "$(cat "$WORK/$name/pid")" 2>/dev/null; then
				echo "$FLAVOR applier with $workers workers: the server died:" >&2
				grep -m3 'ERROR' "$WORK/$name/error.log" >&2
				break
			fi
			if [[ $FLAVOR == mariadb ]]; then
				error=$(sql "$name" "SHOW SLAVE STATUS\G" | sed -n 's/^ *Last_SQL_Error: //p' || true)
			else
				error=$(sql "$name" "SELECT LAST_ERROR_MESSAGE FROM performance_schema.replication_applier_status_by_worker WHERE LAST_ERROR_NUMBER <> 0 LIMIT 1")
			fi
			if [[ -n $error ]]; then
				echo "$FLAVOR applier with $workers workers: $error" >&2
				exit 1
			fi
			sleep 0.05
		done
		if kill -0 "$(cat "$WORK/$name/pid")" 2>/dev/null; then
			local way="applier×$workers"
			((workers == 0)) && way="applier"
			report "$way" "$(echo "$(date +%s.%N) - $began" | bc)" "$name"
			stop "$name"
		fi
	done
}

command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
IFS=, read -ra flavors <<<"$FLAVORS"
for flavor in "${flavors[@]}"; do
	bench_flavor "$flavor"
done
rm -rf "$WORK"
