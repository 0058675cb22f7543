#!/bin/sh
# postinst of fabric-controller: creates the system user fabric, enables the
# service and starts it on a fresh install (the defaults in
# /etc/fabric/controller.yaml work as they are); an upgrade restarts a
# running controller.
set -e

case "$1" in
configure | abort-upgrade | abort-deconfigure | abort-remove)
	if ! getent passwd fabric >/dev/null; then
		adduser --quiet --system --group --no-create-home \
			--home /var/lib/fabric-controller fabric
	fi
	if [ -z "$2" ] && command -v systemctl >/dev/null 2>&1; then
		# Works offline too (it only writes symlinks), so images get it enabled.
		systemctl --no-reload enable fabric-controller.service >/dev/null 2>&1 || true
	fi
	# Talk to the running systemd only when there is one: not in chroots.
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl daemon-reload || true
		if [ -z "$2" ]; then
			systemctl start fabric-controller.service || true
		else
			systemctl try-restart fabric-controller.service || true
		fi
	fi
	;;
esac
exit 0
