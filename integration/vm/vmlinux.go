package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Booting the compressed bzImage under TCG spends about five seconds in the
// kernel's own (emulated) xz decompressor. EnsureKernel therefore also
// unpacks the ELF vmlinux, which qemu loads directly through its PVH entry
// point (the kernel has CONFIG_PVH), decompressing on the host once.

// bzPayload returns the compressed kernel inside a bzImage, located by the
// boot protocol's setup header (payload_offset and payload_length, relative
// to the protected-mode code after the setup sectors).
func bzPayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	end := start + int(binary.LittleEndian.Uint32(img[0x24c:]))
	if start >= end || end > len(img) {
		return nil, fmt.Errorf("payload %d..%d outside the %d-byte image", start, end, len(img))
	}
	return img[start:end], nil
}

// decompressKernel decompresses a bzImage payload: gzip in process, xz and
// zstd with their command-line tools (xz-utils is on every Debian system).
func decompressKernel(ctx context.Context, payload []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return io.ReadAll(zr)
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		return pipeThrough(ctx, payload, "xz", "-dc", "--single-stream")
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return pipeThrough(ctx, payload, "zstd", "-dcq")
	default:
		return nil, fmt.Errorf("unknown kernel compression (magic % x)", payload[:min(len(payload), 6)])
	}
}

func pipeThrough(ctx context.Context, in []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// hasPVHNote reports whether the ELF kernel declares a PVH entry point
// (XEN_ELFNOTE_PHYS32_ENTRY), which qemu needs to boot it directly.
func hasPVHNote(vmlinux []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return false
	}
	defer f.Close()
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return false
		}
		for len(b) >= 12 {
			nameSz := int(f.ByteOrder.Uint32(b[0:]))
			descSz := int(f.ByteOrder.Uint32(b[4:]))
			typ := f.ByteOrder.Uint32(b[8:])
			off := 12 + (nameSz+3)&^3
			next := off + (descSz+3)&^3
			if next > len(b) || nameSz > len(b)-12 {
				break
			}
			if typ == xenElfnotePhys32Entry && string(bytes.TrimRight(b[12:12+nameSz], "\x00")) == "Xen" {
				return true
			}
			b = b[next:]
		}
	}
	return false
}

// extractVmlinux writes the uncompressed, PVH-bootable kernel of the
// bzImage at vmlinuz to dst.
func extractVmlinux(ctx context.Context, vmlinuz, dst string) error {
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	payload, err := bzPayload(img)
	if err != nil {
		return err
	}
	vmlinux, err := decompressKernel(ctx, payload)
	if err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	if !hasPVHNote(vmlinux) {
		return errors.New("the kernel has no PVH entry point")
	}
	return writeFileAtomic(dst, vmlinux, 0o644)
}
