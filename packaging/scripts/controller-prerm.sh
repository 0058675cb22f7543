#!/bin/sh
# prerm of fabric-controller: stop and disable the service on removal (not on
# upgrade: postinst restarts it).
set -e

case "$1" in
remove)
	if command -v systemctl >/dev/null 2>&1; then
		systemctl --no-reload disable fabric-controller.service >/dev/null 2>&1 || true
		if [ -d /run/systemd/system ]; then
			systemctl stop fabric-controller.service || true
		fi
	fi
	;;
esac
exit 0
