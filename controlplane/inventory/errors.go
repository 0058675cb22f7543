package inventory

import (
	"errors"
	"fmt"
)

// Error kinds. Every rejected request wraps exactly one of them, so the API
// edge can map it to a status code with errors.Is. The kind is not part of
// the message.
var (
	// ErrInvalid: the request itself is malformed (bad name, bad prefix).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: a referenced network, machine, device or port is unknown.
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to create (or the allocation) exists already.
	ErrExists = errors.New("already exists")
	// ErrPrecondition: the request is well-formed but the current state
	// does not allow it (overlap, still in use, nothing to free).
	ErrPrecondition = errors.New("failed precondition")
	// ErrExhausted: a pool (VNIs, addresses of a prefix) is empty.
	ErrExhausted = errors.New("exhausted")
)

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
