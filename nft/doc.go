// Package nft will own the firewall policy model and its translation into
// nftables objects in the one table the agent owns, applied in one netlink
// batch. It must never touch another table.
//
// Nothing is implemented yet: the firewall issue builds it.
package nft
