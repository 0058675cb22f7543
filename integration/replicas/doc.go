// Package replicas holds the host-only tests of a controller with several
// replicas on one etcd cluster: real controller servers on loopback TCP,
// real etcd servers (etcdtest), agents with fake kernels. It needs neither
// root nor VRFs. It owns only tests.
package replicas
