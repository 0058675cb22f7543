#!/bin/sh
# A mini-lab machine (or the exit router): Debian's lldpd announcing the
# node's name, and FRR (zebra + bgpd, Debian's package) with an empty config
# in a pathspace named after the node. The lab demo configures BGP with
# vtysh once the controller has given the machine its address:
#   vtysh -N NODE -c 'show bgp summary'
# With real containerlab the image needs lldpd and frr.
set -eu
node=$1
run=/var/run/frr/$node
mkdir -p "$run" /etc/frr/"$node"
chown frr:frr "$run" 2>/dev/null || true
chmod 0775 "$run"
# zebra first: bgpd talks to it over its socket in the pathspace.
/usr/lib/frr/zebra -d -N "$node" -F datacenter -A 127.0.0.1 --log syslog
/usr/lib/frr/bgpd -d -N "$node" -F datacenter -A 127.0.0.1 --log syslog
exec lldpd -d -u /run/fabric-lab/lldpd/lldpd.sock -I 'lan*,eth1' -O /etc/fabric-lab/lldpd.conf
