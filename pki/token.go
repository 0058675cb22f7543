package pki

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// BearerToken is a gRPC per-RPC credential sending token as
// "authorization: Bearer TOKEN". With requireTLS it refuses to be sent
// over a plaintext connection.
func BearerToken(token string, requireTLS bool) interface {
	GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error)
	RequireTransportSecurity() bool
} {
	return bearerToken{token: token, tls: requireTLS}
}

type bearerToken struct {
	token string
	tls   bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.tls }

// ReadTokens reads a token file: one token per line (several allow a
// rotation), blank lines and lines starting with # ignored.
func ReadTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading token file: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("token file " + path + " holds no token")
	}
	return out, nil
}
