#!/usr/bin/env bash
# Runs the release demo and prints throughput, CPU, memory and events.
# usage: bench/demo-throughput.sh CAMERAS DURATION_SECS   (DECODE=keyframes to set the policy)
# Needs ./scripts/setup and `cargo build --release -p varta`; uses the demo ports 8080/8554/54329.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .varta
export ORT_DYLIB_PATH=$PWD/.cache/onnxruntime/lib/libonnxruntime.so.1.32.0
N=$1; D=$2
./target/release/varta demo --cameras $N --duration $D ${DECODE:+--decode $DECODE} > .varta/demo-$N.out 2> .varta/demo-$N.err &
PID=$!
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
sleep 20
# The API needs a token (cameras: any role; /metrics: admin): the demo's admin.
pw=$(sed -n 's/^admin (admin): //p' .varta/demo-accounts.txt)
TOKEN=$(curl -s -X POST -H 'content-type: application/json' -d "{\"username\":\"admin\",\"password\":\"$pw\"}" \
  localhost:8080/api/v1/auth/login | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
c0=$(cpu); t0=$(date +%s.%N)
snap() { curl -s -H "Authorization: Bearer $TOKEN" localhost:8080/api/v1/cameras | python3 -c "
import json,sys; cs=json.load(sys.stdin)
print(len(cs), sum(c['status']=='streaming' for c in cs), sum(c['frames_received']>0 for c in cs), sum(c['frames_received'] for c in cs), sum(c['frames_decoded'] for c in cs), sum(c['frames_sampled'] for c in cs), sum(c['frames_analysed'] for c in cs), sum(c['frames_dropped'] for c in cs), sum(c['restarts'] for c in cs))"; }
s0=$(snap)
sleep $((D-30))
c1=$(cpu); t1=$(date +%s.%N); s1=$(snap)
rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status); thr=$(ls /proc/$PID/task | wc -l)
echo "cameras streaming with_frames received decoded sampled analysed dropped restarts"
echo "t=20s: $s0"; echo "t=$((D-10))s: $s1"
python3 -c "
c0,c1,t0,t1=$c0,$c1,$t0,$t1; tck=100.0; dt=t1-t0
a=[int(x) for x in '$s0'.split()]; b=[int(x) for x in '$s1'.split()]
print(f'window {dt:.0f}s: process CPU {(c1-c0)/tck/dt*100:.0f}% (of 200%), received {(b[3]-a[3])/dt:.0f}/s decoded {(b[4]-a[4])/dt:.0f}/s sampled {(b[5]-a[5])/dt:.1f}/s analysed {(b[6]-a[6])/dt:.1f}/s dropped {(b[7]-a[7])/dt:.1f}/s')
"
echo "RSS ${rss} kB, threads $thr"
curl -s -H "Authorization: Bearer $TOKEN" localhost:8080/metrics | grep -E "^varta_inference_seconds_(sum|count)|^varta_events_written"
wait $PID; echo "demo exit $?"
psql postgres://varta@127.0.0.1:54329/varta -Atc "select count(*), count(*) filter (where class='person'), round(avg(frames),1), round(avg(extract(epoch from coalesce(ended_at,last_seen_at)-started_at))::numeric,1) from events where written_at > now() - interval '$D seconds'"
