#!/bin/sh
# postinst of fabric-agent. The agent needs role and controller in
# /etc/fabric/agent.yaml before it can start, so a fresh install does not
# enable or start it; an upgrade restarts a running agent.
set -e

case "$1" in
configure | abort-upgrade | abort-deconfigure | abort-remove)
	# Talk to systemd only when it runs: not in chroots or image builds.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
		# Load vrf, vxlan, bridge, 8021q now (modules-load.d does it at boot).
		systemctl restart systemd-modules-load.service || true
		if [ -n "$2" ]; then
			systemctl try-restart fabric-agent.service || true
		fi
	fi
	if [ -z "$2" ]; then
		echo "fabric-agent: set role and controller in /etc/fabric/agent.yaml, then: systemctl enable --now fabric-agent"
	fi
	;;
esac
exit 0
