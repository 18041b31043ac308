#!/usr/bin/env bash
# Seals the local world: every address range it hands out ends on this machine, so a
# connection to a fake address fails here, at once, instead of leaving by the default route.
#
#   10.0.0.0/16    kwok's fake node and pod addresses          -> unreachable
#   10.96.0.0/16   Service ClusterIPs                           -> veth siesta-void; every
#                  packet kube-proxy did not translate to a live pod (its destination still a
#                  ClusterIP) is rejected (TCP reset, else ICMP host-unreachable)
#   10.244.0.0/16  process-kubelet pods (kit/localworld/localnet.py): the siesta-pods network
#                  namespace while it exists                    -> else unreachable
#   10.85.0.0/16   the real node's pods (node.sh, bridge siesta-cni0 with 10.85.0.0/24)
#                                                                -> else unreachable
# Pods of the real node and of the process kubelet may not leave through this machine's
# uplink either (the CNI bridge masquerades): forwarded packets from their interfaces to the
# default route's device are rejected.
# The unreachable routes carry metric $METRIC, so the world's own interfaces (their kernel
# routes, metric 0) win while they exist and the route falls back to "unreachable" when they
# go. An unreachable route cannot cover the ClusterIPs: the kernel refuses a connect before
# kube-proxy's NAT rules see it, hence the veth and the reject rules.
#
#   seal.sh up      install (idempotent; up.sh runs it)
#   seal.sh down    remove (down.sh runs it)
#   seal.sh check   exit 1 unless every range is sealed
# Needs CAP_NET_ADMIN (root, or passwordless `sudo -n`).
set -euo pipefail

METRIC=4242
VOID=siesta-void
CHAIN=SIESTA-SEAL
EGRESS_CHAIN=SIESTA-SEAL-EGRESS
POD_LINKS=(siesta-cni0 siesta-host)
UNREACHABLE=(10.0.0.0/16 10.244.0.0/16 10.85.0.0/16)
SERVICES=10.96.0.0/16

sudo_=()
[[ $(id -u) -eq 0 ]] || sudo_=(sudo -n)
ip_() { "${sudo_[@]}" ip "$@"; }
ipt() { "${sudo_[@]}" iptables -w "$@"; }
log() { printf '[seal] %s\n' "$*" >&2; }

up() {
  local range
  for range in "${UNREACHABLE[@]}"; do
    ip_ route replace unreachable "$range" metric "$METRIC"
  done
  if ! ip_ link show "$VOID" >/dev/null 2>&1; then
    ip_ link add "$VOID" type veth peer name "$VOID-end"
  fi
  ip_ link set "$VOID" up
  ip_ link set "$VOID-end" up
  ip_ route replace "$SERVICES" dev "$VOID" metric "$METRIC"
  ipt -N "$CHAIN" 2>/dev/null || ipt -F "$CHAIN"
  # By destination, not by device: a packet kube-proxy translated still names siesta-void as
  # its hook's output device (the route is redone after DNAT), but no longer a ClusterIP.
  ipt -A "$CHAIN" -d "$SERVICES" -p tcp -j REJECT --reject-with tcp-reset
  ipt -A "$CHAIN" -d "$SERVICES" -j REJECT --reject-with icmp-host-unreachable
  local hook
  for hook in OUTPUT FORWARD; do
    ipt -C "$hook" -j "$CHAIN" 2>/dev/null || ipt -I "$hook" -j "$CHAIN"
  done
  local uplink link
  uplink=$(ip_ route show default | awk '{print $5; exit}')
  ipt -N "$EGRESS_CHAIN" 2>/dev/null || ipt -F "$EGRESS_CHAIN"
  if [[ -n $uplink ]]; then
    for link in "${POD_LINKS[@]}"; do
      ipt -A "$EGRESS_CHAIN" -i "$link" -o "$uplink" -p tcp -j REJECT --reject-with tcp-reset
      ipt -A "$EGRESS_CHAIN" -i "$link" -o "$uplink" -j REJECT --reject-with icmp-host-unreachable
    done
  fi
  ipt -C FORWARD -j "$EGRESS_CHAIN" 2>/dev/null || ipt -I FORWARD -j "$EGRESS_CHAIN"
  log "sealed: ${UNREACHABLE[*]} unreachable, $SERVICES rejected on $VOID, pods kept off ${uplink:-the uplink}"
}

down() {
  local range hook
  for range in "${UNREACHABLE[@]}"; do
    ip_ route del unreachable "$range" metric "$METRIC" 2>/dev/null || true
  done
  ip_ route del "$SERVICES" dev "$VOID" metric "$METRIC" 2>/dev/null || true
  ip_ link del "$VOID" 2>/dev/null || true
  for hook in OUTPUT FORWARD; do
    while ipt -D "$hook" -j "$CHAIN" 2>/dev/null; do :; done
  done
  while ipt -D FORWARD -j "$EGRESS_CHAIN" 2>/dev/null; do :; done
  ipt -F "$CHAIN" 2>/dev/null || true
  ipt -X "$CHAIN" 2>/dev/null || true
  ipt -F "$EGRESS_CHAIN" 2>/dev/null || true
  ipt -X "$EGRESS_CHAIN" 2>/dev/null || true
  log "unsealed"
}

check() {
  local range ok=0
  for range in "${UNREACHABLE[@]}"; do
    ip_ route show "$range" metric "$METRIC" | grep -q unreachable || { log "$range not sealed"; ok=1; }
  done
  ip_ route show "$SERVICES" | grep -q "dev $VOID" || { log "$SERVICES not on $VOID"; ok=1; }
  ipt -C OUTPUT -j "$CHAIN" 2>/dev/null || { log "no $CHAIN in OUTPUT"; ok=1; }
  ipt -C FORWARD -j "$CHAIN" 2>/dev/null || { log "no $CHAIN in FORWARD"; ok=1; }
  ipt -C FORWARD -j "$EGRESS_CHAIN" 2>/dev/null || { log "no $EGRESS_CHAIN in FORWARD"; ok=1; }
  return "$ok"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  check) check ;;
  *) echo "usage: $0 up|down|check" >&2; exit 2 ;;
esac
