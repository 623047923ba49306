// Command ledger-interop checks Baomi's evidence ledger with Go's own packages, independent of
// the Rust implementation: the signed checkpoint with golang.org/x/mod/sumdb/note, the tree
// hash, inclusion and consistency proofs with golang.org/x/mod/sumdb/tlog, and a device
// checkpoint's signature with crypto/ed25519 over the message this program builds from the
// checkpoint's leaf (docs/sync-protocol.md). Run by server/tests/ledger.rs; reads a JSON case on
// stdin, prints "ok" or the first failure and exits non-zero.
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type proofCase struct {
	Index  int64    `json:"index"`
	Size   int64    `json:"size"`
	Hashes []string `json:"hashes"`
}

type input struct {
	VerifierKey string      `json:"verifier_key"`
	Note        string      `json:"note"`
	OldNote     string      `json:"old_note"`
	Leaves      []string    `json:"leaves"`
	Inclusion   []proofCase `json:"inclusion"`
	Consistency []string    `json:"consistency"`
	// Absent for an sm office's phone: its checkpoint is an SM2 signature, which Go's
	// standard library does not verify (GmSSL and sm-crypto do, in core/tests/sm_interop.rs).
	Device *struct {
		PublicKey string `json:"public_key"`
		// The device checkpoint's leaf, as logged.
		Checkpoint string `json:"checkpoint"`
	} `json:"device"`
}

// deviceCheckpoint is a checkpoint leaf's fields.
type deviceCheckpoint struct {
	Kind      string `json:"kind"`
	Device    string `json:"device"`
	Seq       uint64 `json:"seq"`
	Link      string `json:"link"`
	At        int64  `json:"at"`
	Signature string `json:"signature"`
	// Set when the device signed the checkpoint with the request that carried it.
	Binding string `json:"binding"`
}

// message is what the device signed: the bound form (v2) when the checkpoint has a binding.
func (c deviceCheckpoint) message() string {
	if c.Binding == "" {
		return fmt.Sprintf("baomi-device-checkpoint-v1\n%s\n%d\n%s\n%d\n", c.Device, c.Seq, c.Link, c.At)
	}
	return fmt.Sprintf("baomi-device-checkpoint-v2\n%s\n%d\n%s\n%d\n%s\n", c.Device, c.Seq, c.Link, c.At, c.Binding)
}

func fail(f string, a ...any) {
	fmt.Printf(f+"\n", a...)
	os.Exit(1)
}

// checkpoint opens a signed note and parses its C2SP checkpoint body.
func checkpoint(text string, v note.Verifier) (int64, tlog.Hash) {
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		fail("note: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint: too short")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		fail("checkpoint hash: %v", err)
	}
	return size, h
}

func hashes(s []string) []tlog.Hash {
	out := make([]tlog.Hash, len(s))
	for i, x := range s {
		h, err := tlog.ParseHash(x)
		if err != nil {
			fail("hash: %v", err)
		}
		out[i] = h
	}
	return out
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	v, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	size, root := checkpoint(in.Note, v)
	// The tree hash from the leaves, as Go's checksum database computes it.
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	if int64(len(in.Leaves)) != size {
		fail("%d leaves for a checkpoint of %d", len(in.Leaves), size)
	}
	for i, l := range in.Leaves {
		hs, err := tlog.StoredHashes(int64(i), []byte(l), reader)
		if err != nil {
			fail("stored hashes: %v", err)
		}
		stored = append(stored, hs...)
	}
	th, err := tlog.TreeHash(size, reader)
	if err != nil || th != root {
		fail("tree hash does not match the checkpoint: %v", err)
	}
	for _, p := range in.Inclusion {
		if err := tlog.CheckRecord(hashes(p.Hashes), p.Size, root, p.Index, tlog.RecordHash([]byte(in.Leaves[p.Index]))); err != nil {
			fail("inclusion of %d: %v", p.Index, err)
		}
	}
	if in.OldNote != "" {
		oldSize, oldRoot := checkpoint(in.OldNote, v)
		if err := tlog.CheckTree(hashes(in.Consistency), size, root, oldSize, oldRoot); err != nil {
			fail("consistency %d -> %d: %v", oldSize, size, err)
		}
	}
	if in.Device == nil {
		fmt.Println("ok")
		return
	}
	pub, err := base64.StdEncoding.DecodeString(in.Device.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		fail("device key")
	}
	var cp deviceCheckpoint
	if err := json.Unmarshal([]byte(in.Device.Checkpoint), &cp); err != nil || cp.Kind != "checkpoint" {
		fail("device checkpoint leaf: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(cp.Signature)
	if err != nil || !ed25519.Verify(ed25519.PublicKey(pub), []byte(cp.message()), sig) {
		fail("device checkpoint signature does not verify")
	}
	fmt.Println("ok")
}
