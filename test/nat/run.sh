#!/usr/bin/env bash
# The NAT lab (`npm run test:nat`): builds network namespaces with real NAT
# routers (lab.sh), runs parley processes in them through the scenarios of
# nat.test.ts, prints the results table and writes it to
# test/nat/results/latest.md. Removes every namespace and process it made when
# it ends, on failure and on Ctrl-C too. Needs root, iproute2, iptables, coturn.
#
#   npm run test:nat                     # every scenario
#   npm run test:nat -- -t 'cone ↔ cone'  # some; arguments go to vitest
#
# PARLEY_NAT_SKIP_BUILD=1 uses dist/ as it is; otherwise dist/ is rebuilt when
# a source file is newer than it.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test:nat: the NAT lab needs root: it creates network namespaces, veth links and iptables NAT rules." >&2
  echo "test:nat: run it as root (CI does), e.g. 'sudo npm run test:nat'." >&2
  exit 1
fi
missing=""
for tool in ip iptables turnserver; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "test:nat: missing$missing; install them with: apt-get install -y iproute2 iptables coturn" >&2
  exit 1
fi

NODE=node_modules/.bin/node
if [ ! -x "$NODE" ]; then
  echo "test:nat: $NODE is missing; run 'npm ci' first" >&2
  exit 1
fi
if [ "${PARLEY_NAT_SKIP_BUILD:-}" != 1 ]; then
  if [ ! -f dist/index.js ] || [ -n "$(find index.ts demo.ts cli daemon node relay protocols common -name '*.ts' -newer dist/index.js -print -quit)" ]; then
    npm run build
  fi
fi

# shellcheck source=test/nat/lab.sh
source test/nat/lab.sh

PARLEY_NAT_WORK=$(mktemp -d /tmp/parley-nat.XXXXXX)
PARLEY_NAT_RESULTS=$(pwd)/test/nat/results
export PARLEY_NAT_WORK PARLEY_NAT_RESULTS PARLEY_NAT_PREFIX="$LAB_PREFIX"
rm -rf "$PARLEY_NAT_RESULTS/logs" "$PARLEY_NAT_RESULTS/latest.md" "$PARLEY_NAT_RESULTS/latest.json"
mkdir -p "$PARLEY_NAT_RESULTS/logs"

vitest_pid=""
cleanup () {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$vitest_pid" ] && kill -0 "$vitest_pid" 2>/dev/null; then
    kill -TERM "$vitest_pid" 2>/dev/null || true
  fi
  lab_down
  rm -rf "$PARLEY_NAT_WORK"
  if [ -n "$(lab_namespaces)" ]; then
    echo "test:nat: could not remove namespaces: $(lab_namespaces | tr '\n' ' ')" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lab_down   # anything an earlier, killed run left behind
lab_up
lab_check
lab_turn_start "$PARLEY_NAT_WORK" "$PARLEY_NAT_RESULTS/logs/coturn.log"
echo "test:nat: lab up: $(lab_namespaces | wc -l) namespaces in 198.18.0.0/15, coturn on $LAB_TURN_IP:3478"

# in the background so that a signal reaches the trap at once, not when vitest ends
status=0
"$NODE" node_modules/vitest/vitest.mjs run --config test/nat/vitest.config.ts "$@" &
vitest_pid=$!
wait "$vitest_pid" || status=$?
vitest_pid=""

if [ -f "$PARLEY_NAT_RESULTS/latest.md" ]; then
  echo
  cat "$PARLEY_NAT_RESULTS/latest.md"
  echo
  echo "test:nat: table in test/nat/results/latest.md, process logs in test/nat/results/logs/"
fi
exit "$status"
