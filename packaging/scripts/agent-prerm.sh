#!/bin/sh
# prerm of fabric-agent: stop and disable the service on removal (not on
# upgrade: postinst restarts it). Stopping leaves the kernel config as it is.
set -e

case "$1" in
remove)
	if command -v systemctl >/dev/null 2>&1; then
		systemctl --no-reload disable fabric-agent.service >/dev/null 2>&1 || true
		if [ -d /run/systemd/system ]; then
			systemctl stop fabric-agent.service || true
		fi
	fi
	;;
esac
exit 0
