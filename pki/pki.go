// Package pki is the fabric's mutual TLS: a small certificate authority
// for throwaway labs (a CA, the controller's server certificate, one client
// certificate per device, operator certificates), the tls.Configs of the
// controller and its clients, and the identity a verified client
// certificate carries. It uses only the standard library (no openssl). It
// owns no network I/O and no policy: which identity may call what is the
// controller's business (controlplane/server).
//
// Identities: a device's certificate names its hostname as CommonName and
// as DNS SAN; an operator's certificate has OrganizationalUnit "operator".
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// OperatorOU is the OrganizationalUnit of operator client certificates.
const OperatorOU = "operator"

// DefaultValidity is how long generated certificates are valid.
const DefaultValidity = 365 * 24 * time.Hour

// CA is a certificate authority that issues the fabric's certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA creates a self-signed CA named name.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	tmpl, err := template(pkix.Name{CommonName: name, Organization: []string{"metalfabric"}}, validity)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func template(subject pkix.Name, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-5 * time.Minute), // clock skew between lab nodes
		NotAfter:     now.Add(validity),
	}, nil
}

// Kind is what a certificate is for.
type Kind int

// The kinds of certificates the CA issues.
const (
	// Server is the controller's certificate: ServerAuth, the names
	// (hostnames or IP addresses) agents and operators dial.
	Server Kind = iota
	// Device is an agent's client certificate: CN and DNS SAN = hostname.
	Device
	// Operator is an operator's client certificate: OU=operator.
	Operator
)

// Issued is a certificate and its private key, PEM-encoded.
type Issued struct {
	CertPEM, KeyPEM []byte
}

// Issue issues a certificate of kind for name; hosts are a server's extra
// names (DNS names or IP addresses).
func (ca *CA) Issue(kind Kind, name string, hosts []string, validity time.Duration) (Issued, error) {
	if name == "" {
		return Issued{}, errors.New("issuing a certificate: empty name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, fmt.Errorf("generating key for %s: %w", name, err)
	}
	subject := pkix.Name{CommonName: name, Organization: []string{"metalfabric"}}
	if kind == Operator {
		subject.OrganizationalUnit = []string{OperatorOU}
	}
	tmpl, err := template(subject, validity)
	if err != nil {
		return Issued{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	switch kind {
	case Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range append([]string{name}, hosts...) {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if !slices.Contains(tmpl.DNSNames, h) {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	case Device:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{name}
	case Operator:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return Issued{}, fmt.Errorf("issuing a certificate for %s: unknown kind %d", name, kind)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return Issued{}, fmt.Errorf("signing certificate for %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Issued{}, fmt.Errorf("encoding key for %s: %w", name, err)
	}
	return Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// CertPEM is the CA certificate, PEM-encoded (the trust anchor file).
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Bundle says which certificates Generate writes.
type Bundle struct {
	// CAName is the CA's CommonName.
	CAName string
	// ControllerHosts are the names and addresses clients dial the
	// controller by; the first is the certificate's CommonName.
	ControllerHosts []string
	// Devices are the device hostnames to issue client certificates for.
	Devices []string
	// Operators are the operator names to issue client certificates for.
	Operators []string
	// Validity of every certificate (default DefaultValidity).
	Validity time.Duration
}

// Generate creates a new CA and the bundle's certificates in dir: ca.pem,
// controller.pem + controller-key.pem, <device>.pem + <device>-key.pem,
// <operator>.pem + <operator>-key.pem, and operator.token (a random bearer
// token for the operator API). The CA's key is not kept: the bundle is
// throwaway, generate a new one to add names. Keys are written 0600.
func Generate(dir string, b Bundle) error {
	if len(b.ControllerHosts) == 0 {
		return errors.New("generating certificates: no controller host name")
	}
	if b.Validity <= 0 {
		b.Validity = DefaultValidity
	}
	if b.CAName == "" {
		b.CAName = "metalfabric throwaway CA"
	}
	ca, err := NewCA(b.CAName, b.Validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := writeFile(filepath.Join(dir, "ca.pem"), ca.CertPEM(), 0o644); err != nil {
		return err
	}
	issue := func(kind Kind, file, name string, hosts []string) error {
		is, err := ca.Issue(kind, name, hosts, b.Validity)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, file+".pem"), is.CertPEM, 0o644); err != nil {
			return err
		}
		return writeFile(filepath.Join(dir, file+"-key.pem"), is.KeyPEM, 0o600)
	}
	if err := issue(Server, "controller", b.ControllerHosts[0], b.ControllerHosts[1:]); err != nil {
		return err
	}
	for _, d := range b.Devices {
		if err := issue(Device, d, d, nil); err != nil {
			return err
		}
	}
	for _, o := range b.Operators {
		if err := issue(Operator, o, o, nil); err != nil {
			return err
		}
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("generating operator token: %w", err)
	}
	return writeFile(filepath.Join(dir, "operator.token"), fmt.Appendf(nil, "%x\n", tok), 0o600)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// WriteFile keeps an existing file's mode.
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// loadPool reads a PEM file of CA certificates.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate", path)
	}
	return pool, nil
}

func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// ServerConfig is the controller's TLS config: its certificate, and client
// certificates verified against clientCAFile when a client presents one.
// Clients without a certificate are let through the handshake (an operator
// may use a bearer token instead); the controller decides per call.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := loadPool(clientCAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}, nil
}

// ClientConfig is an agent's or operator's TLS config: the controller is
// verified against caFile; certFile and keyFile, when set, are the client
// certificate (both or neither).
func ClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := loadPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both the certificate and the key file")
	}
	return cfg, nil
}

// Identity is who a verified client certificate names.
type Identity struct {
	// Names are the CommonName and the DNS SANs.
	Names []string
	// Operator tells the certificate has OU=operator.
	Operator bool
}

// IdentityOf returns the identity of a (verified) client certificate.
func IdentityOf(cert *x509.Certificate) Identity {
	var id Identity
	if cert.Subject.CommonName != "" {
		id.Names = append(id.Names, cert.Subject.CommonName)
	}
	for _, n := range cert.DNSNames {
		if !slices.Contains(id.Names, n) {
			id.Names = append(id.Names, n)
		}
	}
	id.Operator = slices.Contains(cert.Subject.OrganizationalUnit, OperatorOU)
	return id
}
