#!/usr/bin/env bash
# Data-parallel training with MindSpore's own launcher, msrun (see docs/scaling.md).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash scripts/run_distribute_train.sh --device Ascend|GPU|CPU --devices N
           [--nodes M --node-rank R --master-addr HOST] [--master-port P]
           [--cluster-timeout S] [train flags]

Starts `msrun ... python -m mindresnet.train [train flags] --device D`: N processes on this
machine (one per device), M machines in all, so N x M ranks. Every rank trains on its shard of
the data; gradients are averaged (DATA_PARALLEL, gradients_mean=True); rank 0 evaluates and
writes checkpoints, metrics and plots. Per-rank logs: <ckpt-dir>/logs/worker_<rank>.log.

  --device D           Ascend, GPU or CPU (passed on to training)
  --devices N          processes, one per device, on this machine (msrun's local workers)
  --nodes M            machines in the job (default 1)
  --node-rank R        this machine's index, 0..M-1 (required when M > 1)
  --master-addr HOST   address of the machine with node rank 0 (required when M > 1)
  --master-port P      port of msrun's scheduler there (default 8118)
  --cluster-timeout S  seconds to wait for all ranks to join (default 300 on one machine,
                       600 on several)
  -h, --help           this message

--batch-size is per device: global batch = N x M x batch. The learning rate is not scaled
for you: pass the --lr that suits the global batch (docs/scaling.md). Every other flag goes
to `python -m mindresnet.train`. Environment: PYTHON (interpreter, default python3), MSRUN
(launcher, default: msrun beside PYTHON), GLOG_v (MindSpore log level, default 3: errors only).
EOF
}

die() {
  echo "error: $*" >&2
  echo "Run 'bash scripts/run_distribute_train.sh --help' for usage." >&2
  exit 2
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# Value of a flag given as "--flag value" or "--flag=value"; sets SHIFT to the words consumed.
flag_value() {
  local flag="$1" word="$2"
  if [[ "$word" == *=* ]]; then
    VALUE="${word#*=}"
    SHIFT=1
  elif [[ $# -ge 3 && "$3" != --* ]]; then
    VALUE="$3"
    SHIFT=2
  else
    die "$flag needs a value"
  fi
  [[ -n "$VALUE" ]] || die "$flag needs a value"
}

device="" devices="" nodes=1 node_rank="" master_addr="" master_port=8118 cluster_timeout=""
train_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --device | --device=*) flag_value --device "$@"; device="$VALUE" ;;
    --devices | --devices=*) flag_value --devices "$@"; devices="$VALUE" ;;
    --nodes | --nodes=*) flag_value --nodes "$@"; nodes="$VALUE" ;;
    --node-rank | --node-rank=*) flag_value --node-rank "$@"; node_rank="$VALUE" ;;
    --master-addr | --master-addr=*) flag_value --master-addr "$@"; master_addr="$VALUE" ;;
    --master-port | --master-port=*) flag_value --master-port "$@"; master_port="$VALUE" ;;
    --cluster-timeout | --cluster-timeout=*) flag_value --cluster-timeout "$@"; cluster_timeout="$VALUE" ;;
    *) train_args+=("$1"); SHIFT=1 ;;
  esac
  shift "$SHIFT"
done

[[ -n "$device" ]] || die "--device is required (Ascend, GPU or CPU)"
[[ -n "$devices" ]] || die "--devices is required (processes, one per device, on this machine)"
is_uint "$devices" && ((devices >= 1)) || die "--devices must be a positive integer, got '$devices'"
is_uint "$nodes" && ((nodes >= 1)) || die "--nodes must be a positive integer, got '$nodes'"
if ((nodes > 1)); then
  [[ -n "$node_rank" ]] || die "--node-rank is required with --nodes $nodes (0 on the master machine)"
  [[ -n "$master_addr" ]] || die "--master-addr is required with --nodes $nodes (the machine with node rank 0)"
fi
node_rank="${node_rank:-0}" master_addr="${master_addr:-127.0.0.1}"
is_uint "$node_rank" && ((node_rank < nodes)) || die "--node-rank must be an integer in 0..$((nodes - 1)), got '$node_rank'"
is_uint "$master_port" && ((master_port >= 1024 && master_port <= 65535)) \
  || die "--master-port must be an integer in 1024..65535, got '$master_port'"
cluster_timeout="${cluster_timeout:-$((nodes > 1 ? 600 : 300))}"
[[ "$cluster_timeout" =~ ^-?[0-9]+$ ]] || die "--cluster-timeout must be an integer (seconds), got '$cluster_timeout'"

# msrun starts every process as `python ...`, so the chosen interpreter's folder goes first on PATH.
python_path="$(command -v "${PYTHON:-python3}")" || die "PYTHON=${PYTHON:-python3} not found"
bin_dir="$(cd "$(dirname "$python_path")" && pwd)"
[[ -x "$bin_dir/python" ]] || die "msrun launches 'python', and $bin_dir has none: set PYTHON to a 'python' (e.g. venv/bin/python)"
msrun="${MSRUN:-$bin_dir/msrun}"
[[ -x "$msrun" ]] || msrun="$(command -v msrun)" || die "msrun not found beside $python_path nor on PATH (it comes with mindspore)"
export PATH="$bin_dir:$PATH"
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"

# Check the training flags once here, not N times in the workers; learn the device, batch and ckpt dir.
resolved="$("$bin_dir/python" - "${train_args[@]}" --device "$device" <<'EOF'
import sys
from mindresnet.training.config import parse_args
from mindresnet.errors import MindresnetError
try:
    config = parse_args(sys.argv[1:])
except MindresnetError as exc:
    sys.exit(f"error: {exc}")
print(config.device)
print(config.batch_size)
print(config.ckpt_dir)
EOF
)" || { echo "Run 'bash scripts/run_distribute_train.sh --help' for usage." >&2; exit 2; }
{ read -r device; read -r batch_size; read -r ckpt_dir; } <<< "$resolved"
train_args+=(--device "$device")
log_dir="$ckpt_dir/logs"
total=$((devices * nodes))
first_rank=$((node_rank * devices))

msrun_args=(--worker_num="$total" --local_worker_num="$devices" --master_addr="$master_addr"
            --master_port="$master_port" --log_dir="$log_dir" --join=True
            --cluster_time_out="$cluster_timeout" --tail_worker_log="$first_rank")
((nodes == 1)) || msrun_args+=(--node_rank="$node_rank")
# On CPU, pin each worker to its own cores so that its kernel threads do not fight the others'.
[[ "$device" != CPU ]] || msrun_args+=(--bind_core=True)

echo "msrun: $total rank(s) ($nodes node(s) x $devices), this node $node_rank; per-device batch $batch_size," \
     "global batch $((total * batch_size)); logs in $log_dir"
echo "+ $msrun ${msrun_args[*]} python -m mindresnet.train ${train_args[*]}"

# SIGTERM (a scheduler's preemption) or Ctrl-C reaches this script only: msrun runs in a session
# of its own, since on SIGINT it SIGKILLs every worker before rank 0 could save. The script asks
# the workers on this node to stop (SIGTERM): rank 0 finishes its step, saves <arch>-last.ckpt and
# exits; msrun then ends the other ranks, which keep stepping until then so that rank 0 never
# waits for them. Once those workers are gone the script ends msrun's session (its scheduler would
# wait some 30 s for their heartbeats); whatever is still running STOP_GRACE seconds later is killed.
stop_signal=""
stopped_workers=()
stop_workers() {
  [[ -z "$stop_signal" ]] || return 0
  stop_signal="$1"
  echo "launcher: SIG$1 received: stopping the workers; rank 0 saves $ckpt_dir/<arch>-last.ckpt" >&2
  local pid
  for pid in $(pgrep -P "$msrun_pid" || true); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx 'MS_ROLE=MS_WORKER'; then
      kill -TERM "$pid" 2>/dev/null || true
      stopped_workers+=("$pid")
    fi
  done
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    sleep "${STOP_GRACE:-120}" & nap=$!
    wait "$nap"
    kill -KILL -- "-$msrun_pid" $(pgrep -P "$msrun_pid" || true)
  ) </dev/null >/dev/null 2>&1 &
  watchdog_pid=$!
}
running() {  # whether any of these processes has not exited (a zombie that msrun has not reaped has)
  local pid stat
  for pid; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }  # the fields after "(command)": the state comes first
    [[ "${stat%% *}" == Z ]] || return 0
  done
  return 1
}
trap 'stop_workers INT' INT
trap 'stop_workers TERM' TERM
setsid "$msrun" "${msrun_args[@]}" python -m mindresnet.train "${train_args[@]}" &
msrun_pid=$!
rc=0
while :; do
  wait "$msrun_pid" && rc=0 || rc=$?
  kill -0 "$msrun_pid" 2>/dev/null || break  # else a trapped signal interrupted the wait
  if [[ -n "$stop_signal" ]]; then
    while running "${stopped_workers[@]}" && kill -0 "$msrun_pid" 2>/dev/null; do sleep 0.2; done
    kill -TERM -- "-$msrun_pid" 2>/dev/null || true
  fi
done
if [[ -n "$stop_signal" ]]; then
  kill "$watchdog_pid" 2>/dev/null || true
  code=$((128 + $(kill -l "$stop_signal")))
  echo "launcher: stopped by SIG$stop_signal; continue the run with the same command and --resume" >&2
  exit "$code"
fi
if ((rc == 0)); then
  exit 0
fi

# msrun stops every worker when one fails; show the logs of the ranks that failed on this node.
logs=()
for ((rank = first_rank; rank < first_rank + devices; rank++)); do
  [[ ! -f "$log_dir/worker_$rank.log" ]] || logs+=("$log_dir/worker_$rank.log")
done
failed=()
for pattern in '^Traceback \(most recent call last\)|^error: |^[A-Za-z.]*(Error|Exception|Failure): ' '^\[(ERROR|CRITICAL)\]'; do
  for log in "${logs[@]}"; do
    ! grep -qE "$pattern" "$log" || failed+=("$log")
  done
  ((${#failed[@]} == 0)) || break
done
((${#failed[@]} > 0)) || failed=("${logs[@]}")
for log in "${failed[@]}"; do
  echo "---- last lines of $log (without MindSpore INFO/WARNING lines) ----" >&2
  grep -vE '^\[(INFO|WARNING|DEBUG)\]' "$log" | tail -n 30 >&2 || true
done
echo "error: distributed training failed (msrun exit code $rc); all logs are in $log_dir" >&2
exit "$rc"
