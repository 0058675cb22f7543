#!/bin/sh
# postrm of fabric-controller. purge keeps /var/lib/fabric-controller (the
# fabric's inventory and allocations) and the user fabric: remove them by
# hand if you really mean it.
set -e

case "$1" in
remove | purge)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
	fi
	;;
esac
if [ "$1" = purge ] && [ -d /var/lib/fabric-controller ]; then
	echo "fabric-controller: kept /var/lib/fabric-controller (the fabric's state) and the user fabric"
fi
exit 0
