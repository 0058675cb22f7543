package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/model"
)

// policyFile is the YAML (or JSON) file `fabricctl firewall set` reads:
//
//	nat: true
//	egressIPs: [203.0.113.10, 203.0.113.11]
//	publicPrefixes: [203.0.113.64/28]
//	egress:
//	  - {action: drop, cidrs: [10.0.0.0/8], comment: no private ranges}
//	  - {action: accept, protocol: tcp, ports: ["80", "443", "8000-8100"]}
//	ingress:
//	  - {action: accept, protocol: tcp, cidrs: [203.0.113.0/24], ports: ["22"]}
type policyFile struct {
	NAT       bool       `yaml:"nat"`
	EgressIPs []string   `yaml:"egressIPs"`
	Public    []string   `yaml:"publicPrefixes"`
	Ingress   []fileRule `yaml:"ingress"`
	Egress    []fileRule `yaml:"egress"`
}

type fileRule struct {
	Action   string   `yaml:"action"`
	Protocol string   `yaml:"protocol"`
	CIDRs    []string `yaml:"cidrs"`
	Ports    []string `yaml:"ports"`
	Comment  string   `yaml:"comment"`
}

// parsePolicyFile reads a policy file; errors name the rule.
func parsePolicyFile(network string, data []byte) (*apiv1.FirewallPolicy, error) {
	var f policyFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing policy file: %w", err)
	}
	p := &apiv1.FirewallPolicy{Network: network, Nat: f.NAT, EgressIps: f.EgressIPs, PublicPrefixes: f.Public}
	conv := func(dir string, rs []fileRule) ([]*apiv1.FirewallRule, error) {
		var out []*apiv1.FirewallRule
		for i, r := range rs {
			pr := &apiv1.FirewallRule{Action: r.Action, Protocol: r.Protocol, Cidrs: r.CIDRs, Comment: r.Comment}
			for _, s := range r.Ports {
				rg, err := model.ParsePortRange(s)
				if err != nil {
					return nil, fmt.Errorf("%s rule %d: %w", dir, i, err)
				}
				pr.Ports = append(pr.Ports, &apiv1.PortRange{From: uint32(rg.From), To: uint32(rg.To)})
			}
			out = append(out, pr)
		}
		return out, nil
	}
	var err error
	if p.Ingress, err = conv("ingress", f.Ingress); err != nil {
		return nil, err
	}
	if p.Egress, err = conv("egress", f.Egress); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *cli) firewallCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "firewall", Short: "Firewall policies of tenant networks"}
	var file string
	set := &cobra.Command{
		Use:   "set NETWORK -f FILE",
		Short: "Set (replace) a network's firewall policy from a YAML or JSON file ('-' for stdin); an empty file removes it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("reading policy file: %w", err)
			}
			p, err := parsePolicyFile(args[0], data)
			if err != nil {
				return err
			}
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.SetFirewallPolicy, &apiv1.SetFirewallPolicyRequest{Policy: p}, firewallTable)
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "", "policy file (YAML or JSON)")
	_ = set.MarkFlagRequired("file")
	show := &cobra.Command{
		Use:   "show NETWORK",
		Short: "Show a network's firewall policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.GetFirewallPolicy, &apiv1.GetFirewallPolicyRequest{Network: args[0]}, firewallTable)
		},
	}
	cmd.AddCommand(set, show)
	return cmd
}

func firewallTable(p *apiv1.FirewallPolicy) [][]string {
	nat := "off"
	if p.GetNat() {
		nat = "masquerade"
		if len(p.GetEgressIps()) > 0 {
			nat = "snat to " + strings.Join(p.GetEgressIps(), ", ")
		}
	}
	rows := [][]string{{"NETWORK", "DIRECTION", "#", "ACTION", "PROTOCOL", "CIDRS", "PORTS", "COMMENT"}}
	for _, dir := range []struct {
		name  string
		rules []*apiv1.FirewallRule
	}{{"egress", p.GetEgress()}, {"ingress", p.GetIngress()}} {
		for i, r := range dir.rules {
			var ports []string
			for _, pr := range r.GetPorts() {
				ports = append(ports, model.PortRange{From: uint16(pr.GetFrom()), To: uint16(pr.GetTo())}.String())
			}
			proto := r.GetProtocol()
			if proto == "" {
				proto = "any"
			}
			rows = append(rows, []string{p.GetNetwork(), dir.name, fmt.Sprint(i), r.GetAction(), proto,
				orDash(strings.Join(r.GetCidrs(), ",")), orDash(strings.Join(ports, ",")), orDash(r.GetComment())})
		}
	}
	rows = append(rows, []string{p.GetNetwork(), "nat", "-", nat, "-", "-", "-", "-"})
	if len(p.GetPublicPrefixes()) > 0 {
		rows = append(rows, []string{p.GetNetwork(), "public", "-", "route in", "-", strings.Join(p.GetPublicPrefixes(), ","), "-", "-"})
	}
	return rows
}
