# Sourced by the benchmarks that need PostgreSQL: the release binary, and a fresh
# database on the benchmark cluster (.varta/pg-bench, port 54340).
BIN=./target/release/varta

# Starts the cluster, (re)creates database $1, prints its URL.
bench_database() {
  local base
  base=$($BIN local-pg start --dir .varta/pg-bench --port 54340)
  psql "$base" -qc "DROP DATABASE IF EXISTS $1" -qc "CREATE DATABASE $1" >/dev/null
  echo "${base%/*}/$1"
}

bench_stop_database() {
  $BIN local-pg stop --dir .varta/pg-bench
}
