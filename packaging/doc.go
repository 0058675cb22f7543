// Package packaging owns the Debian packaging of fabric-agent and
// fabric-controller: the nfpm configs (nfpm-*.yaml), the default config
// files installed as /etc/fabric/{agent,controller}.yaml, the maintainer
// scripts, the modules-load.d list, and packaging/nfpm, a module of its own
// that builds nfpm's deb packager at the pinned version. scripts/deb.sh
// (make deb) puts them together; the unit files come from systemd/units.
//
// It has no Go code for the daemons and must not touch any fabric logic;
// its tests build the packages and inspect them with dpkg.
package packaging
