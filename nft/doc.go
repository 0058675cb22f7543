// Package nft owns the firewall policy model (our own types: tenants, their
// ingress and egress rules, NAT and rate limits) and its translation into
// nftables objects in the one table the agent owns (`inet fabric` by
// default). Apply replaces that table's contents in one netlink batch, so the
// kernel never sees a half-applied ruleset, and changes only set elements in
// one small batch when nothing but set contents changed. Counters reads the
// table's named counters back.
//
// Match data lives in sets and verdict maps (interval sets for CIDRs and
// port ranges, interval verdict maps that dispatch tenant traffic to the
// tenant's chains), not in one rule per entry.
//
// It must not touch other tables, links, routes or sysctls: the caller (the
// agent's firewall role) owns interfaces, addresses and routing.
package nft
