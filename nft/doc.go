// Package nft owns the firewall policy model (our own types: tenants, their
// ingress and egress rules, NAT and rate limits) and its translation into
// nftables objects in the one table the agent owns (`inet fabric` by
// default). Apply replaces that table's contents in one netlink batch, so the
// kernel never sees a half-applied ruleset; when only rules' CIDRs or ports
// changed it adds and deletes just those set elements, again in one batch.
// Counters reads the table's named counters back.
//
// Match data lives in sets and verdict maps (interval sets for CIDRs and
// port ranges, interval verdict maps that dispatch tenant traffic to the
// tenant's chains), not in one rule per entry. The layout:
//
//	chain input    (hook input, policy drop): lo, established/related,
//	               invalid, ICMPv6, Policy.Input rules, drop
//	chain forward  (hook forward, policy drop): iifname/saddr verdict maps
//	               jump to <tenant>/egress, oifname/daddr maps to
//	               <tenant>/ingress; else established/related, drop
//	chain <tenant>/egress, <tenant>/ingress: rate limit, established/
//	               related, invalid, the rules in order, drop
//	chain postrouting (nat, srcnat): per tenant masquerade or snat
//	               (jhash of the source address over the egress IPs)
//
// Counters are named <tenant>/<egress|ingress>/<accepted|dropped|
// ratelimited|rule/N>, <tenant>/nat/translated, input/..., forward/dropped
// (see CounterName).
//
// It must not touch other tables, links, routes or sysctls: the caller (the
// agent's firewall role) owns interfaces, addresses, forwarding and routing.
package nft
