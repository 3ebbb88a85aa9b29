# The NAT lab's network: network namespaces joined by veth pairs, sourced by run.sh.
#
#   internet (198.18.0.0/24, a bridge in namespace "inet")
#     198.18.0.1   parley relay            198.18.0.2   coturn (STUN/TURN, UDP 3478)
#     198.18.0.10  host "pub" (no NAT)
#     198.18.0.254 "void": takes what the internet cannot route and drops it
#     198.18.0.21  router cone1 (MASQUERADE)             LAN 198.18.1.0/24: cone1a .10, cone1b .11
#     198.18.0.22  router cone2 (MASQUERADE)             LAN 198.18.2.0/24: cone2a .10
#     198.18.0.31  router sym1  (MASQUERADE --random-fully) LAN 198.18.3.0/24: sym1a .10
#     198.18.0.32  router sym2  (MASQUERADE --random-fully) LAN 198.18.4.0/24: sym2a .10
#
# Every address is in the benchmarking block 198.18.0.0/15 (RFC 2544). No
# namespace has a default route and nothing is created in the host's own
# namespace. LAN hosts route 198.18.0.0/15 to their router. Like the real
# internet, which drops packets for private addresses, the internet namespace,
# the public host and the routers send what they cannot route (another LAN's
# addresses) to the void host, which drops it silently: a dial to a peer's LAN
# address from elsewhere times out, as it would out there.
# PARLEY_NAT_UNROUTABLE=reject makes the public host and the routers refuse such
# packets at once instead (no route: ENETUNREACH / ICMP net unreachable).

LAB_PREFIX=${PARLEY_NAT_PREFIX:-parley-nat}
LAB_UNROUTABLE=${PARLEY_NAT_UNROUTABLE:-drop}
LAB_INET=198.18.0
LAB_VOID_IP=$LAB_INET.254
LAB_RELAY_IP=$LAB_INET.1
LAB_TURN_IP=$LAB_INET.2
LAB_TURN_USER=parley
LAB_TURN_PASSWORD=parley-lab

# name kind wan-ip lan-subnet-third-octet
LAB_ROUTERS=(
  "cone1 cone 198.18.0.21 1"
  "cone2 cone 198.18.0.22 2"
  "sym1 symmetric 198.18.0.31 3"
  "sym2 symmetric 198.18.0.32 4"
)
# host router ip
LAB_HOSTS=(
  "cone1a cone1 198.18.1.10"
  "cone1b cone1 198.18.1.11"
  "cone2a cone2 198.18.2.10"
  "sym1a sym1 198.18.3.10"
  "sym2a sym2 198.18.4.10"
)

# The networks of issue 15, as more routers and hosts. A fifth router field
# names the router whose LAN the router's WAN side sits on (default: the
# internet). Kind "open-cone": a cone NAT whose router does not drop
# unsolicited packets to itself (no INPUT drop).
#   carrier-grade NAT: cgn1/cgn2 are carriers (cone, 198.18.0.41/.42), each
#     with one home router (home1/home2, cone) on its carrier LAN; cgn1a and
#     cgn2a sit behind both
#   many peers: many1/many2 (cone), four hosts on each LAN
#   open1: the router that answers, host open1a
LAB_ROUTERS+=(
  "cgn1 cone 198.18.0.41 41"
  "home1 cone 198.18.41.10 42 cgn1"
  "cgn2 cone 198.18.0.42 43"
  "home2 cone 198.18.43.10 44 cgn2"
  "many1 cone 198.18.0.51 51"
  "many2 cone 198.18.0.52 52"
  "open1 open-cone 198.18.0.61 61"
)
LAB_HOSTS+=(
  "cgn1a home1 198.18.42.10"
  "cgn2a home2 198.18.44.10"
  "many1a many1 198.18.51.10"
  "many1b many1 198.18.51.11"
  "many1c many1 198.18.51.12"
  "many1d many1 198.18.51.13"
  "many2a many2 198.18.52.10"
  "many2b many2 198.18.52.11"
  "many2c many2 198.18.52.12"
  "many2d many2 198.18.52.13"
  "open1a open1 198.18.61.10"
)

# Lossy link (15.3): lossy1 is a cone NAT whose WAN link loses 5 % of the
# packets each way (iptables statistic; this kernel has no netem for delay).
LAB_ROUTERS+=(
  "lossy1 lossy-cone 198.18.0.71 71"
)
LAB_HOSTS+=(
  "lossy1a lossy1 198.18.71.10"
)
LAB_LOSS=${PARLEY_NAT_LOSS:-0.05}
# Laptop moves (15.4): roam1a starts on roam1's LAN; the scenario moves its
# link to roam2's LAN (another cone NAT), where it gets 198.18.82.10.
LAB_ROUTERS+=(
  "roam1 cone 198.18.0.81 81"
  "roam2 cone 198.18.0.82 82"
)
LAB_HOSTS+=(
  "roam1a roam1 198.18.81.10"
)

# UDP blocked (15.2): office1 is a cone NAT whose firewall lets out only TCP to
# ports 80 and 443 (kind web-only); the relay listens on 443 (WebSockets) too.
LAB_ROUTERS+=(
  "office1 web-only 198.18.0.91 91"
)
LAB_HOSTS+=(
  "office1a office1 198.18.91.10"
)
# IPv6 (15.7), inside the documentation prefix 2001:db8::/32 and only in these
# namespaces: the internet bridge carries 2001:db8::/64 too (the relay is
# dual-stack, 2001:db8::1); dual1/dual2 are symmetric NATs for IPv4 (as a
# carrier's NAT often is where the ISP gives native IPv6) that route IPv6
# unfiltered (kind dual-symmetric: WAN 2001:db8::<octet>, LAN 2001:db8:<octet>::/64):
# only IPv6 lets the pair go direct;
# v6pub is an IPv6-only host on the internet bridge (2001:db8::20).
LAB_ROUTERS+=(
  "dual1 dual-symmetric 198.18.0.101 101"
  "dual2 dual-symmetric 198.18.0.102 102"
)
LAB_HOSTS+=(
  "dual1a dual1 198.18.101.10"
  "dual2a dual2 198.18.102.10"
)
LAB_V6=2001:db8
LAB_RELAY_IP6=$LAB_V6::1
LAB_V6ONLY_IP6=$LAB_V6::20

# many peers (15.6): six more hosts on each LAN (e to j), for ten a side when
# PARLEY_NAT_MANY=10 asks for them
for lan in 1 2; do
  i=14
  for letter in e f g h i j; do
    LAB_HOSTS+=("many$lan$letter many$lan 198.18.5$lan.$i")
    i=$((i + 1))
  done
done

lab_ns () { echo "$LAB_PREFIX-$1"; }

# sysctl inside a namespace (through /proc: no procps needed); a knob the
# kernel lacks is skipped
lab_sysctl () {
  local ns=$1 file="/proc/sys/${2//.//}" value=$3
  ip netns exec "$ns" sh -c "if [ -e '$file' ]; then echo '$value' > '$file'; fi"
}

# turns IPv6 on in a namespace (lab_new_ns turns it off): for the interfaces
# there now and those made later
lab_ipv6_on () {
  local ns=$1 dev
  lab_sysctl "$ns" net.ipv6.conf.all.disable_ipv6 0
  lab_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 0
  for dev in $(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    lab_sysctl "$ns" "net.ipv6.conf.$dev.disable_ipv6" 0
  done
}

# whether a namespace's device has a lab IPv6 address (a router's br-lan: it
# is dual-stack). Not `ip … | grep -q`: under `set -o pipefail` (run.sh) that
# pipeline fails whenever grep quits at its first match and `ip` dies of
# SIGPIPE writing the rest, and a busy machine then left dual-stack hosts
# without IPv6 (5 labs in 12 under load; NAT lab 15.7a failed on it). Every
# check here reads a command's whole output first.
lab_has_ipv6 () {
  [[ "$(ip -n "$1" -6 addr show dev "$2" 2>/dev/null)" == *" $LAB_V6:"* ]]
}

lab_new_ns () {
  local ns
  ns=$(lab_ns "$1")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # no IPv6 anywhere in the lab: nothing to leak, one address family to reason about
  lab_sysctl "$ns" net.ipv6.conf.all.disable_ipv6 1
  lab_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 1
  # bridged frames must not go through iptables (br_netfilter is loaded on some hosts)
  lab_sysctl "$ns" net.bridge.bridge-nf-call-iptables 0
}

lab_up () {
  local inet r name kind wan octet upstream host router ip rns hns
  inet=$(lab_ns inet)

  lab_new_ns inet
  ip -n "$inet" link add br0 type bridge
  ip -n "$inet" link set br0 up
  ip -n "$inet" addr add "$LAB_RELAY_IP/24" dev br0
  ip -n "$inet" addr add "$LAB_TURN_IP/24" dev br0
  lab_ipv6_on "$inet"
  lab_sysctl "$inet" net.ipv6.conf.all.forwarding 1
  ip -n "$inet" addr add "$LAB_RELAY_IP6/64" dev br0 nodad

  # the void: on the internet, not forwarding, so it drops whatever it is sent.
  # coturn needs it: a relay socket that gets ENETUNREACH (sending to a LAN host
  # candidate) makes coturn close the whole allocation
  lab_new_ns void
  ip link add w-void netns "$inet" type veth peer name eth0 netns "$(lab_ns void)"
  ip -n "$inet" link set w-void master br0 up
  ip -n "$(lab_ns void)" addr add "$LAB_VOID_IP/24" dev eth0
  ip -n "$(lab_ns void)" link set eth0 up
  lab_sysctl "$(lab_ns void)" net.ipv4.ip_forward 0
  ip -n "$inet" route add 198.18.0.0/15 via "$LAB_VOID_IP"

  # the public host: straight on the internet bridge
  lab_new_ns pub
  ip link add w-pub netns "$inet" type veth peer name eth0 netns "$(lab_ns pub)"
  ip -n "$inet" link set w-pub master br0 up
  ip -n "$(lab_ns pub)" addr add "$LAB_INET.10/24" dev eth0
  ip -n "$(lab_ns pub)" link set eth0 up
  if [ "$LAB_UNROUTABLE" = drop ]; then
    ip -n "$(lab_ns pub)" route add 198.18.0.0/15 via "$LAB_VOID_IP"
  fi

  # the IPv6-only host: on the internet bridge, no IPv4 address at all
  lab_new_ns v6pub
  ip link add w-v6pub netns "$inet" type veth peer name eth0 netns "$(lab_ns v6pub)"
  ip -n "$inet" link set w-v6pub master br0 up
  lab_ipv6_on "$(lab_ns v6pub)"
  ip -n "$(lab_ns v6pub)" addr add "$LAB_V6ONLY_IP6/64" dev eth0 nodad
  ip -n "$(lab_ns v6pub)" link set eth0 up
  ip -n "$(lab_ns v6pub)" -6 route add "$LAB_V6::/32" via "$LAB_RELAY_IP6"

  for r in "${LAB_ROUTERS[@]}"; do
    upstream=""
    read -r name kind wan octet upstream <<< "$r"
    rns=$(lab_ns "$name")
    lab_new_ns "$name"
    if [ -n "$upstream" ]; then
      # behind another router (a home router behind a carrier NAT): everything goes up to it
      ip link add "w-$name" netns "$(lab_ns "$upstream")" type veth peer name wan netns "$rns"
      ip -n "$(lab_ns "$upstream")" link set "w-$name" master br-lan up
    else
      ip link add "w-$name" netns "$inet" type veth peer name wan netns "$rns"
      ip -n "$inet" link set "w-$name" master br0 up
    fi
    ip -n "$rns" addr add "$wan/24" dev wan
    ip -n "$rns" link set wan up
    ip -n "$rns" link add br-lan type bridge
    ip -n "$rns" addr add "198.18.$octet.1/24" dev br-lan
    ip -n "$rns" link set br-lan up
    lab_sysctl "$rns" net.ipv4.ip_forward 1
    if [ -n "$upstream" ]; then
      ip -n "$rns" route add 198.18.0.0/15 via "${wan%.*}.1"
    elif [ "$LAB_UNROUTABLE" = drop ]; then
      ip -n "$rns" route add 198.18.0.0/15 via "$LAB_VOID_IP"
    fi

    # source NAT from the LAN to the internet
    if [ "$kind" = symmetric ] || [ "$kind" = dual-symmetric ]; then
      # a new, random external port for every new flow (endpoint-dependent mapping)
      ip netns exec "$rns" iptables -t nat -A POSTROUTING -s "198.18.$octet.0/24" -o wan -j MASQUERADE --random-fully
    else
      # the source port is kept while it is free (endpoint-independent mapping)
      ip netns exec "$rns" iptables -t nat -A POSTROUTING -s "198.18.$octet.0/24" -o wan -j MASQUERADE
    fi
    # inbound only for flows the LAN started (address-and-port-dependent filtering).
    # DROP, not REJECT: an unsolicited packet must leave no conntrack entry behind
    # that would make the router pick another port when the LAN host answers
    ip netns exec "$rns" iptables -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ip netns exec "$rns" iptables -A FORWARD -i wan -j DROP
    ip netns exec "$rns" iptables -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ip netns exec "$rns" iptables -A INPUT -i wan -p icmp -j ACCEPT
    if [ "$kind" = lossy-cone ]; then
      # first in the chains: random loss on the WAN side, each way, before anything else
      ip netns exec "$rns" iptables -I FORWARD 1 -i wan -m statistic --mode random --probability "$LAB_LOSS" -j DROP
      ip netns exec "$rns" iptables -I FORWARD 1 -o wan -m statistic --mode random --probability "$LAB_LOSS" -j DROP
    fi
    if [ "$kind" = web-only ]; then
      # an office firewall: out of the LAN only TCP to ports 80 and 443 (no UDP, so no STUN, TURN or ICE)
      ip netns exec "$rns" iptables -A FORWARD -i br-lan -o wan -p tcp -m multiport --dports 80,443 -j ACCEPT
      ip netns exec "$rns" iptables -A FORWARD -i br-lan -o wan -p udp -j DROP
      ip netns exec "$rns" iptables -A FORWARD -i br-lan -o wan -j DROP
    fi
    if [ "$kind" = dual-symmetric ]; then
      # IPv6 routed, not translated, and not filtered: open end to end
      lab_ipv6_on "$rns"
      lab_sysctl "$rns" net.ipv6.conf.all.forwarding 1
      ip -n "$rns" addr add "$LAB_V6::$octet/64" dev wan nodad
      ip -n "$rns" addr add "$LAB_V6:$octet::1/64" dev br-lan nodad
      ip -n "$rns" -6 route add "$LAB_V6::/32" via "$LAB_RELAY_IP6"
      ip -n "$inet" -6 route add "$LAB_V6:$octet::/64" via "$LAB_V6::$octet"
    fi
    if [ "$kind" != open-cone ]; then
      # an open-cone router lets unsolicited packets reach itself: the first
      # punch from a peer then leaves a conntrack entry on the mapped port
      ip netns exec "$rns" iptables -A INPUT -i wan -j DROP
    fi
  done

  for h in "${LAB_HOSTS[@]}"; do
    read -r host router ip <<< "$h"
    rns=$(lab_ns "$router")
    hns=$(lab_ns "$host")
    lab_new_ns "$host"
    ip link add "l-$host" netns "$rns" type veth peer name eth0 netns "$hns"
    ip -n "$rns" link set "l-$host" master br-lan up
    ip -n "$hns" addr add "$ip/24" dev eth0
    ip -n "$hns" link set eth0 up
    ip -n "$hns" route add 198.18.0.0/15 via "${ip%.*}.1"
    if lab_has_ipv6 "$rns" br-lan; then
      # behind a dual-stack router: an IPv6 address on its LAN too (the host part of the IPv4 one)
      octet=$(echo "$ip" | cut -d. -f3)
      lab_ipv6_on "$hns"
      ip -n "$hns" addr add "$LAB_V6:$octet::${ip##*.}/64" dev eth0 nodad
      ip -n "$hns" -6 route add "$LAB_V6::/32" via "$LAB_V6:$octet::1"
    fi
  done
}

# every namespace of this lab, whichever were made
lab_namespaces () {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$LAB_PREFIX-" || true
}

# Ends every process still running in a lab namespace (all of them started by
# this lab), then deletes the namespaces, which removes their veths too.
lab_down () {
  local ns pids
  for ns in $(lab_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
    fi
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=""
    for ns in $(lab_namespaces); do pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"; done
    [ -z "${pids// /}" ] && break
    sleep 0.3
  done
  for ns in $(lab_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

# coturn in the internet namespace: STUN and TURN (UDP) on 198.18.0.2:3478,
# relaying only to lab addresses. $1: scratch dir, $2: log file
lab_turn_start () {
  local work=$1 log=$2 i
  ip netns exec "$(lab_ns inet)" turnserver -n \
    --listening-ip="$LAB_TURN_IP" --relay-ip="$LAB_TURN_IP" --listening-port=3478 \
    --min-port=49152 --max-port=49999 \
    --lt-cred-mech --user="$LAB_TURN_USER:$LAB_TURN_PASSWORD" --realm=parley.lab \
    --no-tls --no-dtls --no-cli --fingerprint --no-software-attribute \
    --denied-peer-ip=0.0.0.0-255.255.255.255 --allowed-peer-ip=198.18.0.0-198.19.255.255 \
    --userdb="$work/turndb" --pidfile="$work/turnserver.pid" \
    --log-file="$log" --simple-log --no-stdout-log ${LAB_TURN_EXTRA:-} >/dev/null 2>&1 &
  for i in $(seq 1 50); do
    if [[ "$(ip netns exec "$(lab_ns inet)" ss -lun)" == *"$LAB_TURN_IP:3478"* ]]; then return 0; fi
    sleep 0.1
  done
  echo "coturn did not start; see $log" >&2
  return 1
}

# The lab must be sealed: every route of every namespace of it stays inside
# 198.18.0.0/15 (no default route, no IPv6), and the host's own namespace holds
# no address of it.
lab_check () {
  local ns
  for ns in $(lab_namespaces); do
    if [ -n "$(ip -n "$ns" -4 route show | grep -v '^198\.1[89]\.')" ]; then
      echo "lab check: $ns has a route outside 198.18.0.0/15: $(ip -n "$ns" -4 route show | grep -v '^198\.1[89]\.' | head -1)" >&2; return 1
    fi
    # IPv6 only inside the documentation prefix, and link-local (namespace-local)
    if [ -n "$(ip -n "$ns" -6 route show 2>/dev/null | grep -vE '^(2001:db8:|fe80::/64 |multicast )')" ]; then
      echo "lab check: $ns has an IPv6 route outside 2001:db8::/32: $(ip -n "$ns" -6 route show | grep -vE '^(2001:db8:|fe80::/64 |multicast )' | head -1)" >&2; return 1
    fi
    if [ -n "$(ip -n "$ns" -o addr show | grep ' inet6 ' | grep -vE ' inet6 (2001:db8:|fe80::|::1/128)')" ]; then
      echo "lab check: $ns has an IPv6 address outside 2001:db8::/32" >&2; return 1
    fi
    if [ -n "$(ip -n "$ns" -o addr show | grep -v ' lo ' | grep ' inet ' | grep -v ' 198\.1[89]\.')" ]; then
      echo "lab check: $ns has an address outside 198.18.0.0/15" >&2; return 1
    fi
  done
  # every host behind a dual-stack router has its IPv6 address
  local h host router ip
  for h in "${LAB_HOSTS[@]}"; do
    read -r host router ip <<< "$h"
    if lab_has_ipv6 "$(lab_ns "$router")" br-lan && ! lab_has_ipv6 "$(lab_ns "$host")" eth0; then
      echo "lab check: $host is behind dual-stack $router but has no IPv6 address" >&2; return 1
    fi
  done
  if [ -n "$(ip -o addr show | grep -E ' 198\.1[89]\.| 2001:db8:')" ]; then
    echo "lab check: the host namespace has a lab address" >&2; return 1
  fi
}
