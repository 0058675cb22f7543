package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/pki"
)

// Auth is who may call what.
//
// With DeviceCerts, every DeviceService call must come with a verified
// client certificate (the gRPC server's TLS config verifies it) that names
// the device: its CommonName or a DNS SAN equal to the request's hostname;
// a device may only act on its own hostname. Operator certificates are no
// device identity.
//
// OperatorService calls, when any operator credential is configured (or
// DeviceCerts is on), need a bearer token from OperatorTokens
// ("authorization: Bearer TOKEN" metadata) or a verified client
// certificate with OU=operator or a name in OperatorNames.
//
// The zero Auth lets every call through (a plaintext lab controller).
type Auth struct {
	DeviceCerts    bool
	OperatorTokens []string
	OperatorNames  []string
}

// WithAuth sets the authorization policy (default: the zero Auth).
func WithAuth(a Auth) Option { return func(c *config) { c.auth = a } }

func (a Auth) operatorRequired() bool {
	return a.DeviceCerts || len(a.OperatorTokens) > 0 || len(a.OperatorNames) > 0
}

var (
	deviceServicePrefix   = "/" + apiv1.DeviceService_ServiceDesc.ServiceName + "/"
	operatorServicePrefix = "/" + apiv1.OperatorService_ServiceDesc.ServiceName + "/"
)

// peerIdentity returns the identity of the call's verified client
// certificate, ok false without one.
func peerIdentity(ctx context.Context) (pki.Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return pki.Identity{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return pki.Identity{}, false
	}
	return pki.IdentityOf(ti.State.VerifiedChains[0][0]), true
}

// authorizeDevice checks that the caller may act as device host.
func (s *Server) authorizeDevice(ctx context.Context, host string) error {
	if !s.auth.DeviceCerts {
		return nil
	}
	id, ok := peerIdentity(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "device calls need a client certificate issued to the device")
	}
	if id.Operator {
		return status.Errorf(codes.PermissionDenied, "%v is an operator certificate, not a device's", id.Names)
	}
	if host == "" || !slices.Contains(id.Names, host) {
		return status.Errorf(codes.PermissionDenied, "certificate of %v may not act for device %q", id.Names, host)
	}
	return nil
}

// authorizeOperator checks the caller's operator credentials.
func (s *Server) authorizeOperator(ctx context.Context) error {
	if !s.auth.operatorRequired() {
		return nil
	}
	if tok, ok := bearer(ctx); ok {
		if s.tokenValid(tok) {
			return nil
		}
		return status.Error(codes.Unauthenticated, "invalid operator token")
	}
	id, ok := peerIdentity(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "operator calls need a bearer token or an operator client certificate")
	}
	if id.Operator || slices.ContainsFunc(id.Names, func(n string) bool { return slices.Contains(s.auth.OperatorNames, n) }) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "certificate of %v is no operator identity", id.Names)
}

// bearer returns the call's bearer token.
func bearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(tok), true
		}
	}
	return "", false
}

// tokenValid compares hashes in constant time, so neither the token nor
// its length leaks through timing.
func (s *Server) tokenValid(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	valid := 0
	for _, t := range s.auth.OperatorTokens {
		want := sha256.Sum256([]byte(t))
		valid |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return valid == 1
}

// hostnamed is every DeviceService request.
type hostnamed interface{ GetHostname() string }

func (s *Server) authorize(ctx context.Context, method string, req any) error {
	switch {
	case strings.HasPrefix(method, deviceServicePrefix):
		h, ok := req.(hostnamed)
		if !ok {
			return status.Errorf(codes.PermissionDenied, "%s: request names no device", method)
		}
		return s.authorizeDevice(ctx, h.GetHostname())
	case strings.HasPrefix(method, operatorServicePrefix):
		return s.authorizeOperator(ctx)
	default:
		return status.Errorf(codes.PermissionDenied, "%s: unknown service", method)
	}
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.authorize(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// authStream checks a stream's first request (WatchConfig has one).
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &authedStream{ServerStream: ss, s: s, method: info.FullMethod})
}

type authedStream struct {
	grpc.ServerStream
	s       *Server
	method  string
	checked bool
}

func (a *authedStream) RecvMsg(m any) error {
	if err := a.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !a.checked {
		if err := a.s.authorize(a.Context(), a.method, m); err != nil {
			return err
		}
		a.checked = true
	}
	return nil
}

// AuthInterceptors are the server options that enforce the Auth, for
// callers that register the services on their own gRPC server (Run
// installs them itself).
func (s *Server) AuthInterceptors() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.authUnary), grpc.ChainStreamInterceptor(s.authStream)}
}
