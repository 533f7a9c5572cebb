#!/usr/bin/env bash
# Rows/s of `COPY (SELECT * FROM <1M-row file>) TO STDOUT` through the gateway
# (release build, embedded engine) and from PostgreSQL 15 for the same table,
# on this machine, in one run. Prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${PGDATA_DIR:-}" ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
chmod 755 "$work"

python3 - "$work/trades.csv" "$ROWS" <<'PY'
import random, sys, datetime
path, n = sys.argv[1], int(sys.argv[2])
syms = ["AAPL", "TSLA", "NVDA", "MSFT", "AMZN", "GOOGL", "META", "NFLX"]
t0 = datetime.datetime(2026, 1, 1)
rnd = random.Random(7)
with open(path, "w") as f:
    f.write("symbol,price,volume,ts\n")
    for i in range(n):
        ts = t0 + datetime.timedelta(microseconds=i * 1371)
        f.write(f"{syms[i % 8]},{rnd.randint(10000, 50000) / 100:.2f},{rnd.randint(1, 1000)},{ts.isoformat(sep=' ')}\n")
PY
echo "generated $ROWS rows"

cargo build --release -q -p velo-gateway
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/velo-gateway --listen 127.0.0.1:$port --demo-rate 1 >"$work/gw.log" 2>&1 &
for _ in $(seq 100); do grep -q "listening on" "$work/gw.log" && break; sleep 0.1; done

measure() { # command... -> prints rows/s
  local start end lines
  start=$(date +%s.%N)
  lines=$("$@" | wc -l)
  end=$(date +%s.%N)
  python3 -c "import sys; r=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print(f'{r} rows in {t:.2f}s = {r/t:,.0f} rows/s')" "$lines" "$start" "$end"
}

q="COPY (SELECT * FROM 'file://$work/trades.csv') TO STDOUT"
gw=$(measure psql -X -h 127.0.0.1 -p $port -d velostream -c "$q")
echo "gateway:       $gw"

PGDATA_DIR="$work/pg"
mkdir -p "$PGDATA_DIR" && chown postgres "$PGDATA_DIR" "$work"
runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$PGDATA_DIR" -A trust -U postgres >/dev/null
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$PGDATA_DIR" -o "-p $pgport -k $work -c listen_addresses=127.0.0.1" -l "$work/pg.log" -w start >/dev/null
psql -X -q -h 127.0.0.1 -p $pgport -U postgres -c "CREATE TABLE trades (symbol text, price numeric(18,2), volume bigint, ts timestamp)" \
  -c "\\copy trades FROM '$work/trades.csv' WITH (FORMAT csv, HEADER)" -c "VACUUM ANALYZE trades"
pg=$(measure psql -X -h 127.0.0.1 -p $pgport -U postgres -c "COPY (SELECT * FROM trades) TO STDOUT")
echo "postgresql 15: $pg"
python3 -c "import sys,re; g=float(re.search(r'= ([\d,]+)', sys.argv[1]).group(1).replace(',','')); p=float(re.search(r'= ([\d,]+)', sys.argv[2]).group(1).replace(',','')); print(f'ratio gateway/postgresql: {g/p:.2f}x')" "$gw" "$pg"
