//go:build linux

package vm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewLinkMsg(t *testing.T) {
	msg := newLinkMsg("vrfprobe", "vrf", vrfTableAttr(4242))
	if got := int(binary.NativeEndian.Uint32(msg[0:4])); got != len(msg) {
		t.Errorf("length field %d, message %d bytes", got, len(msg))
	}
	for _, s := range []string{"vrfprobe\x00", "vrf\x00"} {
		if !bytes.Contains(msg, []byte(s)) {
			t.Errorf("message lacks %q", s)
		}
	}
}

func TestParseAck(t *testing.T) {
	ack := func(code int32) []byte {
		b := make([]byte, 36)
		binary.NativeEndian.PutUint32(b[0:4], 36)
		binary.NativeEndian.PutUint16(b[4:6], 2) // NLMSG_ERROR
		binary.NativeEndian.PutUint32(b[16:20], uint32(code))
		return b
	}
	if err := parseAck(ack(0)); err != nil {
		t.Errorf("parseAck(ACK) = %v", err)
	}
	err := parseAck(ack(-int32(syscall.EOPNOTSUPP)))
	if !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("parseAck(-EOPNOTSUPP) = %v", err)
	}
	if err := parseAck([]byte{1, 2}); err == nil {
		t.Error("parseAck(short) = nil")
	}
	if diff := cmp.Diff(true, parseAck(ack(-1)) != nil); diff != "" {
		t.Errorf("parseAck(-EPERM) (-want +got):\n%s", diff)
	}
}
