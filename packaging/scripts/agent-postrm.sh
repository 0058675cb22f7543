#!/bin/sh
# postrm of fabric-agent. purge also removes the last-known-good cache.
set -e

case "$1" in
remove | purge)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
	fi
	;;
esac
if [ "$1" = purge ]; then
	rm -rf /var/lib/fabric-agent
fi
exit 0
